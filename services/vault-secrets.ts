import { findSecretPlace, findVaultStates } from '../repositories/credentials.js'
import type { Queryable } from '../repositories/transaction.js'

/**
 * Client secrets kept in HashiCorp Vault's KV v2 engine (Vault enabled: VAULT_ADDR).
 *
 * Layout: one KV v2 secret per credential at `agentidp/agents/<agentId>/credentials/<credentialId>`
 * under VAULT_MOUNT, holding `{ argon2id: <PHC hash of the secret> }` — never the secret in clear:
 * verification needs only the hash, and a hash read out of Vault is still useless for
 * authenticating. The credential row records the path (`vault_path`) and the KV version it stands
 * for (`vault_version`); a version the row does not name never verifies.
 *
 * Write order, so that no crash or failure at any point leaves a usable half:
 * - generate: inside the row's transaction, after its checks, the secret is written with
 *   `cas: 0` (create only), then the row is inserted and committed. A row therefore never exists
 *   without its secret. A failure after the Vault write leaves a secret without a row: it can't
 *   authenticate anything (authentication starts from the row), `discardIfOrphan` removes it at
 *   once when it can, and `reconcile` removes whatever a crash left.
 * - rotate: under the row's lock, a new version with `cas: <the row's version>`, then the row
 *   names it. A failed commit leaves a newer version the row does not name: unusable, destroyed by
 *   `reconcile`; the next rotation writes on top of it (see `storeRotated`).
 * - revoke / decommission: the row is revoked first (that is what stops the credential, at once,
 *   on every instance), then every version and the metadata are deleted; if Vault can't be
 *   reached then, `reconcile` deletes them later. Revocation never waits for Vault.
 */
export const SECRET_FOLDER = 'agentidp/agents'

/** The Vault KV v2 calls this module needs (plugins/vault.ts implements them with hashi-vault-js). */
export interface KvStore {
  /** writes a new version with check-and-set; resolves with the version written; `CasMismatchError` when `cas` is not current */
  write (path: string, data: Record<string, string>, cas: number): Promise<number>
  /** the secret's metadata, or null when there is none */
  metadata (path: string): Promise<KvMetadata | null>
  /** the keys directly under a folder (sub-folders end in '/'); [] when there are none */
  list (folder: string): Promise<string[]>
  /** destroys the listed versions (their data is gone for good) */
  destroy (path: string, versions: number[]): Promise<void>
  /** deletes the metadata and every version */
  erase (path: string): Promise<void>
}

export interface KvMetadata {
  currentVersion: number
  /** when the last version was written (epoch ms) */
  updatedMs: number
  versions: Array<{ version: number, createdMs: number, destroyed: boolean }>
}

/** A check-and-set write refused because the secret's current version is not the one given. */
export class CasMismatchError extends Error {
  constructor () {
    super('check-and-set parameter did not match the current version')
    this.name = 'CasMismatchError'
  }
}

export function vaultPathOf (agentId: string, credentialId: string): string {
  return `${SECRET_FOLDER}/${agentId}/credentials/${credentialId}`
}

/** The hash held by a Vault secret's data, or null when the data isn't ours. */
export function hashFromData (data: unknown): string | null {
  const hash = (data as { argon2id?: unknown } | null)?.argon2id
  return typeof hash === 'string' && hash.startsWith('$argon2id$') ? hash : null
}

/** Generate: the new credential's secret, written only if nothing is at its path yet. */
export async function storeNew (kv: KvStore, agentId: string, credentialId: string, secretHash: string): Promise<{ vaultPath: string, vaultVersion: number }> {
  const vaultPath = vaultPathOf(agentId, credentialId)
  return { vaultPath, vaultVersion: await kv.write(vaultPath, { argon2id: secretHash }, 0) }
}

/**
 * Rotate: a new version on top of the one the row names (`rowVersion`; null for a credential whose
 * hash was in PostgreSQL, which moves into Vault). Called under the row's lock, so no other
 * rotation of this credential runs meanwhile: a current version newer than the row's can only be
 * what a rotation that failed before its commit left, never verified by anything, and the write
 * goes on top of it.
 */
export async function storeRotated (kv: KvStore, agentId: string, credentialId: string, rowVersion: number | null, secretHash: string): Promise<{ vaultPath: string, vaultVersion: number }> {
  const vaultPath = vaultPathOf(agentId, credentialId)
  const data = { argon2id: secretHash }
  try {
    return { vaultPath, vaultVersion: await kv.write(vaultPath, data, rowVersion ?? 0) }
  } catch (error) {
    if (!(error instanceof CasMismatchError)) throw error
    const current = (await kv.metadata(vaultPath))?.currentVersion ?? 0
    if (current <= (rowVersion ?? 0)) throw error
    return { vaultPath, vaultVersion: await kv.write(vaultPath, data, current) }
  }
}

/**
 * After a rotation committed: the versions before the one the row now names are destroyed, so
 * the old secret's hash is gone from Vault too (the old secret already stopped verifying at the
 * commit). Best effort: reconciliation destroys whatever this could not.
 */
export async function destroyOlderVersions (kv: KvStore, vaultPath: string, keep: number): Promise<void> {
  const metadata = await kv.metadata(vaultPath)
  const older = (metadata?.versions ?? []).filter((entry) => entry.version < keep && !entry.destroyed).map((entry) => entry.version)
  if (older.length > 0) await kv.destroy(vaultPath, older)
}

/**
 * After a generate failed once its secret was written: removes the secret, unless the row exists
 * after all (a commit whose answer was lost may have succeeded). When PostgreSQL can't say, the
 * secret stays for `reconcile`, which decides once it can.
 */
export async function discardIfOrphan (kv: KvStore, db: Queryable, agentId: string, credentialId: string): Promise<boolean> {
  const vaultPath = vaultPathOf(agentId, credentialId)
  const place = await findSecretPlace(db, credentialId)
  if (place !== null && place.vaultPath === vaultPath) return false
  await kv.erase(vaultPath)
  return true
}

export interface ReconcileOutcome { erased: number, versionsDestroyed: number }

/**
 * One reconciliation pass over every secret under SECRET_FOLDER, against the rows:
 * - no row names the secret (a generate that failed or crashed after its Vault write, or a
 *   credential rotated back into PostgreSQL): erased, once untouched for `graceMs` (a generate in
 *   progress writes before it commits);
 * - the row is revoked: erased (revocation's own erase failed, e.g. Vault was down);
 * - versions the row does not name: older ones destroyed at once, newer ones (a rotation that
 *   failed before its commit) once `graceMs` old.
 * Idempotent, so every instance may run it.
 */
export async function reconcile (kv: KvStore, db: Queryable, options: { graceMs: number, now?: number }): Promise<ReconcileOutcome> {
  const now = options.now ?? Date.now()
  const outcome: ReconcileOutcome = { erased: 0, versionsDestroyed: 0 }
  for (const agentKey of await kv.list(SECRET_FOLDER)) {
    if (!agentKey.endsWith('/')) continue
    const agentId = agentKey.slice(0, -1)
    const keys = await kv.list(`${SECRET_FOLDER}/${agentId}/credentials`)
    if (keys.length === 0) continue
    const rows = await findVaultStates(db, agentId).catch(() => null)
    // a folder name that isn't an agent id (uuid) can't be looked up: nothing of ours, left alone
    if (rows === null) continue
    for (const credentialId of keys.filter((key) => !key.endsWith('/'))) {
      const vaultPath = vaultPathOf(agentId, credentialId)
      const metadata = await kv.metadata(vaultPath)
      if (metadata === null) continue
      const row = rows.get(credentialId)
      const named = row !== undefined && row.vaultPath === vaultPath ? row : undefined
      if (named === undefined ? now - metadata.updatedMs >= options.graceMs : named.revoked) {
        await kv.erase(vaultPath)
        outcome.erased += 1
        continue
      }
      if (named === undefined) continue
      const stray = metadata.versions.filter((entry) => !entry.destroyed && entry.version !== named.vaultVersion &&
        (entry.version < (named.vaultVersion ?? 0) || now - entry.createdMs >= options.graceMs)).map((entry) => entry.version)
      if (stray.length > 0) {
        await kv.destroy(vaultPath, stray)
        outcome.versionsDestroyed += stray.length
      }
    }
  }
  return outcome
}

/** Decommission: every secret of the agent erased (its rows are already revoked). */
export async function eraseAgent (kv: KvStore, agentId: string): Promise<number> {
  const keys = (await kv.list(`${SECRET_FOLDER}/${agentId}/credentials`)).filter((key) => !key.endsWith('/'))
  for (const credentialId of keys) await kv.erase(vaultPathOf(agentId, credentialId))
  return keys.length
}
