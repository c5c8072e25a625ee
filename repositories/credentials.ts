import type { Queryable } from './transaction.js'
import type { Credential } from '../schemas/credentials.js'

/**
 * All SQL about credentials, including what client authentication reads of a credential and its
 * agent. `expired` is never stored: it is derived from expires_at on read.
 */

interface CredentialRow {
  credential_id: string
  client_id: string
  effective_status: Credential['status']
  created_at: Date
  expires_at: Date | null
  revoked_at: Date | null
}

const COLUMNS = `credential_id, client_id, created_at, expires_at, revoked_at,
  CASE WHEN status = 'revoked' THEN 'revoked'
       WHEN expires_at IS NOT NULL AND expires_at <= now() THEN 'expired'
       ELSE 'active' END AS effective_status`

function toCredential (row: CredentialRow): Credential {
  return {
    credentialId: row.credential_id,
    clientId: row.client_id,
    status: row.effective_status,
    createdAt: row.created_at.toISOString(),
    expiresAt: row.expires_at?.toISOString() ?? null,
    revokedAt: row.revoked_at?.toISOString() ?? null
  }
}

/**
 * Where a credential's secret is kept: its argon2id hash in this row, or (Vault enabled) one KV v2
 * secret at `vaultPath`, version `vaultVersion`.
 */
export type SecretPlace =
  | { secretHash: string, vaultPath?: null, vaultVersion?: null }
  | { secretHash?: null, vaultPath: string, vaultVersion: number }

export type NewCredential = { credentialId: string, clientId: string, expiresAt: string | null } & SecretPlace

/**
 * What a verified secret is bound to, as SQL over a credentials row `alias`: the stored hash, or
 * the Vault path and version. A rotation changes it, so a secret remembered as verified, or a
 * token request verified just before a rotation, stops counting at once (client-auth, issuance).
 */
export function secretBindingSql (alias: string): string {
  // a key, jwks_uri or federated row never changes its binding: it is revoked and replaced instead
  return `COALESCE(${alias}.secret_hash, 'vault:' || ${alias}.vault_path || '#' || ${alias}.vault_version, 'credential:' || ${alias}.kind)`
}

export async function insertCredential (db: Queryable, input: NewCredential): Promise<Credential> {
  const { rows } = await db.query<CredentialRow>(
    `INSERT INTO credentials (credential_id, client_id, secret_hash, vault_path, vault_version, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
    [input.credentialId, input.clientId, input.secretHash ?? null, input.vaultPath ?? null, input.vaultVersion ?? null, input.expiresAt])
  return toCredential(rows[0])
}

/** Where the secret of a credential is kept now (read under the caller's lock, if any). */
export async function findSecretPlace (db: Queryable, credentialId: string): Promise<{ vaultPath: string | null, vaultVersion: number | null } | null> {
  const { rows } = await db.query<{ vault_path: string | null, vault_version: number | null }>(
    'SELECT vault_path, vault_version FROM credentials WHERE credential_id = $1', [credentialId])
  return rows.length === 0 ? null : { vaultPath: rows[0].vault_path, vaultVersion: rows[0].vault_version }
}

/** The Vault-relevant state of an agent's credentials, for reconciliation: id → state. */
export async function findVaultStates (db: Queryable, clientId: string): Promise<Map<string, { revoked: boolean, vaultPath: string | null, vaultVersion: number | null }>> {
  const { rows } = await db.query<{ credential_id: string, status: string, vault_path: string | null, vault_version: number | null }>(
    "SELECT credential_id, status, vault_path, vault_version FROM credentials WHERE client_id = $1 AND kind = 'secret'", [clientId])
  return new Map(rows.map((row) => [row.credential_id, { revoked: row.status === 'revoked', vaultPath: row.vault_path, vaultVersion: row.vault_version }]))
}

export async function countActiveCredentials (db: Queryable, clientId: string): Promise<number> {
  const { rows } = await db.query<{ count: number }>(
    `SELECT count(*)::int AS count FROM credentials
     WHERE client_id = $1 AND kind = 'secret' AND status = 'active' AND (expires_at IS NULL OR expires_at > now())`, [clientId])
  return rows[0].count
}

export async function listCredentials (db: Queryable, clientId: string): Promise<Credential[]> {
  const { rows } = await db.query<CredentialRow>(
    `SELECT ${COLUMNS} FROM credentials WHERE client_id = $1 AND kind = 'secret' ORDER BY created_at DESC, credential_id DESC`, [clientId])
  return rows.map(toCredential)
}

export async function findCredential (db: Queryable, clientId: string, credentialId: string, options: { forUpdate?: boolean } = {}): Promise<Credential | null> {
  const { rows } = await db.query<CredentialRow>(
    `SELECT ${COLUMNS} FROM credentials WHERE credential_id = $1 AND client_id = $2 AND kind = 'secret'${options.forUpdate === true ? ' FOR UPDATE' : ''}`,
    [credentialId, clientId])
  return rows.length === 0 ? null : toCredential(rows[0])
}

/**
 * Rotation: same credential, new secret, same expiry. Tokens already issued are left alone.
 * The new secret's place replaces the old one whole (a rotation moves a hashed credential into
 * Vault when Vault is on, and back when it is off).
 */
export async function replaceSecret (db: Queryable, credentialId: string, place: SecretPlace | string): Promise<Credential> {
  const { secretHash = null, vaultPath = null, vaultVersion = null } = typeof place === 'string' ? { secretHash: place } : place
  const { rows } = await db.query<CredentialRow>(
    `UPDATE credentials SET secret_hash = $2, vault_path = $3, vault_version = $4, rotated_at = now(), updated_at = now()
     WHERE credential_id = $1 RETURNING ${COLUMNS}`, [credentialId, secretHash, vaultPath, vaultVersion])
  return toCredential(rows[0])
}

export async function revokeCredential (db: Queryable, credentialId: string): Promise<Credential> {
  const { rows } = await db.query<CredentialRow>(
    `UPDATE credentials SET status = 'revoked', revoked_at = now(), updated_at = now()
     WHERE credential_id = $1 RETURNING ${COLUMNS}`, [credentialId])
  return toCredential(rows[0])
}

/**
 * Revokes every federated subject (`kind = 'federated'`) that names `issuer` and is not revoked
 * yet, whatever agent it belongs to: the issuer is no longer trusted, so neither are the tokens its
 * assertions obtained. Returns what it revoked.
 */
export async function revokeFederatedCredentials (db: Queryable, issuer: string): Promise<Array<{ credentialId: string, clientId: string }>> {
  const { rows } = await db.query<{ credential_id: string, client_id: string }>(
    `UPDATE credentials SET status = 'revoked', revoked_at = now(), updated_at = now()
     WHERE kind = 'federated' AND federated_issuer = $1 AND status <> 'revoked'
     RETURNING credential_id, client_id`, [issuer])
  return rows.map((row) => ({ credentialId: row.credential_id, clientId: row.client_id }))
}

/** Revokes every credential of an agent not revoked yet; returns the ids it revoked. */
export async function revokeAllCredentials (db: Queryable, clientId: string): Promise<string[]> {
  const { rows } = await db.query<{ credential_id: string }>(
    `UPDATE credentials SET status = 'revoked', revoked_at = now(), updated_at = now()
     WHERE client_id = $1 AND status <> 'revoked' RETURNING credential_id`, [clientId])
  return rows.map((row) => row.credential_id)
}

/** What client authentication needs, from the credential the secret names and its agent. */
export interface ClientRecord {
  credentialId: string
  agentId: string
  /**
   * What a verified secret is bound to: the stored argon2id hash, or for a Vault-held secret
   * `vault:<path>#<version>` (secretBindingSql); null when the row holds neither.
   */
  secretHash: string | null
  /** the Vault KV v2 secret holding the hash, when the secret is kept in Vault */
  vaultPath: string | null
  vaultVersion: number | null
  credentialStatus: 'active' | 'revoked' | 'expired'
  /** epoch milliseconds, null for never: lets a remembered record expire on time */
  expiresAtMs: number | null
  agentStatus: 'active' | 'suspended' | 'decommissioned'
  capabilities: string[]
  validAfterMs: number
  /** the agent's authMethods: a secret is refused when its method is not listed */
  authMethods: string[]
  dpopBound: boolean
  /** the agent's audiences (RFC 8707): what a token request's `resource` may name besides the issuer */
  audiences: string[]
}

export async function findClientByCredential (db: Queryable, credentialId: string): Promise<ClientRecord | null> {
  const { rows } = await db.query<{
    credential_id: string, agent_id: string, secret_hash: string | null, vault_path: string | null, vault_version: number | null, credential_status: ClientRecord['credentialStatus'],
    agent_status: ClientRecord['agentStatus'], capabilities: string[], valid_after_ms: string, expires_at: Date | null, auth_methods: string[], dpop_bound: boolean, audiences: string[]
  }>({
    name: 'find-client-by-credential',
    text: `SELECT c.credential_id, a.agent_id, ${secretBindingSql('c')} AS secret_hash, c.vault_path, c.vault_version,
       CASE WHEN c.status = 'revoked' THEN 'revoked'
            WHEN c.expires_at IS NOT NULL AND c.expires_at <= now() THEN 'expired'
            ELSE 'active' END AS credential_status,
       c.expires_at, a.status AS agent_status, a.capabilities, a.auth_methods, a.dpop_bound, a.audiences,
       (extract(epoch FROM a.tokens_valid_after) * 1000)::bigint AS valid_after_ms
     FROM credentials c JOIN agents a ON a.agent_id = c.client_id
     WHERE c.credential_id = $1 AND c.kind = 'secret'`,
    values: [credentialId]
  })
  if (rows.length === 0) return null
  const row = rows[0]
  return {
    credentialId: row.credential_id,
    agentId: row.agent_id,
    secretHash: row.secret_hash,
    vaultPath: row.vault_path,
    vaultVersion: row.vault_version,
    credentialStatus: row.credential_status,
    expiresAtMs: row.expires_at?.getTime() ?? null,
    agentStatus: row.agent_status,
    capabilities: row.capabilities,
    validAfterMs: Number(row.valid_after_ms),
    authMethods: row.auth_methods,
    dpopBound: row.dpop_bound,
    audiences: row.audiences
  }
}
