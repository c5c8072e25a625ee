import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import https from 'node:https'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import Vault from 'hashi-vault-js'
import {
  CasMismatchError, destroyOlderVersions, discardIfOrphan, eraseAgent, hashFromData, SECRET_FOLDER, storeNew, storeRotated, vaultPathOf,
  type KvMetadata, type KvStore
} from '../services/vault-secrets.js'
import { findSecretPlace, type SecretPlace } from '../repositories/credentials.js'
import type { Queryable } from '../repositories/transaction.js'
import { ConfigError, DependencyUnavailableError } from '../lib/errors.js'

/**
 * HashiCorp Vault (registered only when VAULT_ADDR is set): the KV v2 store of client secrets'
 * hashes (services/vault-secrets.ts says what is stored where and in which order), through the
 * hashi-vault-js client.
 *
 * - Every call is bounded by VAULT_TIMEOUT_MS (the client's own timeout, and a deadline around
 *   it: axios' timeout does not cover a server that trickles). A Vault that is sealed, refuses the
 *   token (403), is slow or is down is a DependencyUnavailableError('vault'): 503 quickly, and
 *   nothing is cached about it, so the next call after Vault recovers just works (no restart).
 * - At start: the token is looked up (lookup-self), then a probe secret is written, read and
 *   deleted under the mount: a token that can't do what the credentials need refuses the start
 *   with one line. A renewable token is renewed by a job (plugins/jobs.ts) at a third of its TTL.
 * - Hashes read from Vault are kept in memory by (path, version) for HASH_TTL_MS: a wrong secret
 *   presented again and again does not call Vault each time, and the version in the key makes a
 *   rotation take effect at once. What is verified while Vault is down: see client-auth.
 * - The token never leaves this module: errors carry a status or an errno, never the client's
 *   error object (whose request config holds the X-Vault-Token header).
 */
const HASH_TTL_MS = 10 * 60_000
const HASH_MAX_ENTRIES = 10_000

export interface VaultCapability {
  readonly mount: string
  readonly kv: KvStore
  /** the argon2id hash a Vault-held credential's row names; null when that version is not there */
  hashOf (path: string, version: number): Promise<string | null>
  /** sys/health and lookup-self: resolves when Vault is unsealed, answers and accepts the token */
  check (): Promise<void>
  /** lookup-self; the token's TTL in seconds and whether it can be renewed */
  lookupSelf (): Promise<{ ttlSeconds: number, renewable: boolean, policies: string[] }>
  /** renew-self; the new TTL in seconds */
  renewSelf (): Promise<number>
  /** the token as lookup-self described it at start */
  readonly token: { renewable: boolean, ttlSeconds: number }
}

declare module 'fastify' {
  interface FastifyInstance {
    /** undefined when Vault is not configured (VAULT_ADDR unset) */
    vault?: VaultCapability
  }
}

interface ClientError { response?: { status?: number, data?: { errors?: unknown[] } }, code?: string }

/** What a failed call says, without the client's error object (it holds the request headers). */
function describeFailure (error: unknown): { status: number | null, code: string, casMismatch: boolean } {
  const { response, code } = (error ?? {}) as ClientError
  const status = typeof response?.status === 'number' ? response.status : null
  const messages = Array.isArray(response?.data?.errors) ? response.data.errors.map(String) : []
  return {
    status,
    code: status === null ? (typeof code === 'string' ? code : 'no answer') : status === 503 ? 'sealed or unavailable (503)' : status === 403 ? 'permission denied (403)' : `HTTP ${status}`,
    casMismatch: status === 400 && messages.some((message) => message.includes('check-and-set'))
  }
}

/** The Vault client's request bodies, as `updateKVSecret` sends them (see `writeVersion`). */
interface AxiosLike { post (url: string, data: unknown, config: { headers: Record<string, string> }): Promise<{ data: { data?: { version?: number } } }> }

export function createVaultCapability (config: {
  VAULT_ADDR: string, VAULT_TOKEN: string, VAULT_MOUNT: string, VAULT_TIMEOUT_MS: number, VAULT_CACERT?: string, VAULT_TLS_SERVER_NAME?: string
}): Omit<VaultCapability, 'token'> {
  const address = new URL(config.VAULT_ADDR)
  const location = `${address.hostname}:${address.port || (address.protocol === 'https:' ? '443' : '8200')}`
  const token = config.VAULT_TOKEN
  const mount = config.VAULT_MOUNT.replace(/^\/+|\/+$/g, '')
  const timeoutMs = config.VAULT_TIMEOUT_MS
  const client = new Vault({ baseUrl: `${config.VAULT_ADDR.replace(/\/+$/, '')}/v1`, timeout: timeoutMs, https: false })
  const instance = client.instance as AxiosLike & { defaults: { httpsAgent?: unknown } }
  if (config.VAULT_CACERT !== undefined || config.VAULT_TLS_SERVER_NAME !== undefined) {
    // the client's own `cacert` option reads the file inside its constructor and only prints a
    // failure; reading it here turns a wrong path into a start-up refusal that names the variable
    let ca: Buffer | undefined
    if (config.VAULT_CACERT !== undefined) {
      try {
        ca = readFileSync(config.VAULT_CACERT)
      } catch (error) {
        throw new ConfigError('VAULT_CACERT', `cannot be read (${(error as { code?: string }).code ?? 'error'})`)
      }
    }
    instance.defaults.httpsAgent = new https.Agent({ ca, servername: config.VAULT_TLS_SERVER_NAME, keepAlive: true })
  }

  /** One bounded call; every failure becomes DependencyUnavailableError('vault') except those `accept` maps. */
  async function call<T> (work: () => PromiseLike<T>, accept: (failure: ReturnType<typeof describeFailure>) => T | undefined = () => undefined): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error('vault call timed out'), { code: 'ETIMEDOUT' })), timeoutMs)
    })
    try {
      return await Promise.race([work(), deadline])
    } catch (error) {
      const failure = describeFailure(error)
      if (failure.casMismatch) throw new CasMismatchError()
      const accepted = accept(failure)
      if (accepted !== undefined) return accepted
      throw new DependencyUnavailableError('vault', { cause: { code: failure.code, status: failure.status }, location })
    } finally {
      clearTimeout(timer)
    }
  }
  const notFound = <T>(value: T) => (failure: { status: number | null }) => failure.status === 404 ? value : undefined

  /**
   * A check-and-set write of a new version. The request is the one hashi-vault-js's
   * `updateKVSecret` sends (POST <mount>/data/<path>, {options: {cas}, data}), made through the
   * client's own configured instance, because that method prints the whole error response with
   * console.log when Vault refuses the write — request headers included, i.e. the token.
   * `createKVSecret` (cas 0) has no such print and is used for new secrets.
   */
  async function writeVersion (path: string, data: Record<string, string>, cas: number): Promise<number> {
    const answer = cas === 0
      ? await call(() => client.createKVSecret(token, path, data, mount)) as { version?: number }
      : (await call(() => instance.post(`${mount}/data/${path}`, { options: { cas }, data }, { headers: { 'X-Vault-Token': token } }))).data.data ?? {}
    if (typeof answer.version !== 'number') throw new DependencyUnavailableError('vault', { cause: { code: 'no version in the answer' }, location })
    return answer.version
  }

  const kv: KvStore = {
    write: writeVersion,
    async metadata (path) {
      const raw = await call(() => client.readKVSecretMeta(token, path, mount), notFound(null)) as {
        current_version?: number, updated_time?: string, versions?: Record<string, { created_time: string, destroyed: boolean }>
      } | null
      if (raw === null || typeof raw.current_version !== 'number') return null
      const metadata: KvMetadata = {
        currentVersion: raw.current_version,
        updatedMs: Date.parse(raw.updated_time ?? '') || 0,
        versions: Object.entries(raw.versions ?? {}).map(([version, entry]) => ({ version: Number(version), createdMs: Date.parse(entry.created_time) || 0, destroyed: entry.destroyed }))
      }
      return metadata
    },
    async list (folder) {
      const raw = await call(() => client.listKVSecrets(token, folder, mount), notFound(null)) as { keys?: unknown } | null
      return Array.isArray(raw?.keys) ? raw.keys.filter((key): key is string => typeof key === 'string') : []
    },
    async destroy (path, versions) {
      await call(() => client.destroyVersionsKVSecret(token, path, versions, mount))
    },
    async erase (path) {
      // deleting what is already gone is success: erasing is idempotent
      await call(() => client.eliminateKVSecret(token, path, mount), notFound(null))
    }
  }

  const hashes = new Map<string, { hash: string, expiresAt: number }>()
  return {
    mount,
    kv,
    async hashOf (path, version) {
      const key = `${path}#${version}`
      const now = Date.now()
      const hit = hashes.get(key)
      if (hit !== undefined && hit.expiresAt > now) return hit.hash
      const raw = await call(() => client.readKVSecret(token, path, version, mount), notFound(null)) as { data?: unknown } | null
      const hash = hashFromData(raw?.data)
      if (hash !== null) {
        if (hashes.size >= HASH_MAX_ENTRIES) hashes.delete(hashes.keys().next().value as string)
        hashes.set(key, { hash, expiresAt: now + HASH_TTL_MS })
      }
      return hash
    },
    async check () {
      // standbyok: a standby node forwards to the active one, so it can serve this instance;
      // sys/health is unauthenticated, so lookup-self also checks that the token is still accepted
      await call(() => client.healthCheck({ standbyok: true }))
      await call(() => client.lookupSelfToken(token))
    },
    async lookupSelf () {
      const raw = await call(() => client.lookupSelfToken(token)) as { ttl?: number, renewable?: boolean, policies?: string[] }
      return { ttlSeconds: raw.ttl ?? 0, renewable: raw.renewable === true, policies: raw.policies ?? [] }
    },
    async renewSelf () {
      // no increment: Vault extends the token by its own TTL (or period), which is what lookup-self showed
      const raw = await call(() => client.renewSelfToken(token, undefined as unknown as string)) as { lease_duration?: number }
      return raw.lease_duration ?? 0
    }
  }
}

/**
 * The argon2id hash a credential row stands for: the row's own, or (the secret kept in Vault) the
 * one at its Vault path and version — read from Vault, or from memory when read in the last
 * HASH_TTL_MS. Null when there is none to verify against (the version is gone). A Vault-held
 * credential while Vault is not configured, or can't answer: DependencyUnavailableError('vault'),
 * so the token endpoint answers 503 temporarily_unavailable, not a misleading invalid_client.
 */
export async function storedHashOf (app: FastifyInstance, record: { secretHash: string | null, vaultPath: string | null, vaultVersion: number | null }): Promise<string | null> {
  if (record.vaultPath === null || record.vaultVersion === null) return record.secretHash
  if (app.vault === undefined) throw new DependencyUnavailableError('vault', { cause: { code: 'VAULT_ADDR is not set' } })
  return await app.vault.hashOf(record.vaultPath, record.vaultVersion)
}

/*
 * The credential routes' calls (routes/credentials, routes/agents): where a new or rotated secret
 * goes, and the clean-up after a failure, a rotation, a revocation. Without Vault the hash goes in
 * the row, as before. The order of the writes is services/vault-secrets.ts's.
 */

/** Generate, inside the row's transaction and before the row: the secret's place. */
export async function placeNewSecret (app: FastifyInstance, agentId: string, credentialId: string, secretHash: string): Promise<SecretPlace> {
  return app.vault === undefined ? { secretHash } : await storeNew(app.vault.kv, agentId, credentialId, secretHash)
}

/** Generate failed after its Vault write may have happened: remove the secret unless a row names it. */
export async function afterFailedGenerate (app: FastifyInstance, agentId: string, credentialId: string): Promise<void> {
  if (app.vault === undefined) return
  await discardIfOrphan(app.vault.kv, app.pg, agentId, credentialId).catch((error: unknown) => {
    app.log.warn({ credentialId, err: { message: (error as Error).message } }, 'vault: a secret without its credential row is left for reconciliation')
  })
}

/** Rotate, under the row's lock and before the row changes: the new secret's place. */
export async function placeRotatedSecret (app: FastifyInstance, db: Queryable, agentId: string, credentialId: string, secretHash: string): Promise<SecretPlace> {
  if (app.vault === undefined) return { secretHash }
  const current = await findSecretPlace(db, credentialId)
  const rowVersion = current?.vaultPath === vaultPathOf(agentId, credentialId) ? current.vaultVersion : null
  return await storeRotated(app.vault.kv, agentId, credentialId, rowVersion, secretHash)
}

/** After a rotation committed: the old versions' hashes destroyed (best effort). */
export async function afterRotation (app: FastifyInstance, place: SecretPlace): Promise<void> {
  if (app.vault === undefined || place.vaultPath == null || place.vaultVersion == null) return
  await destroyOlderVersions(app.vault.kv, place.vaultPath, place.vaultVersion).catch((error: unknown) => {
    app.log.warn({ err: { message: (error as Error).message } }, 'vault: old versions of a rotated secret are left for reconciliation')
  })
}

/** After revocations committed (one credential, or every credential of a decommissioned agent). */
export async function afterRevocation (app: FastifyInstance, agentId: string, credentialId?: string): Promise<void> {
  const vault = app.vault
  if (vault === undefined) return
  const erase = credentialId === undefined ? eraseAgent(vault.kv, agentId) : vault.kv.erase(vaultPathOf(agentId, credentialId))
  await erase.catch((error: unknown) => {
    app.log.warn({ agentId, credentialId, err: { message: (error as Error).message } }, 'vault: secrets of revoked credentials are left for reconciliation')
  })
}

/**
 * Refuses the start unless the token is valid and can do what credentials need under the mount:
 * write, read, list and delete (a probe secret, removed at once).
 */
async function checkAccess (vault: Omit<VaultCapability, 'token'>, location: string): Promise<{ ttlSeconds: number, renewable: boolean }> {
  const refuse = (error: unknown, what: string): never => {
    if (error instanceof DependencyUnavailableError) {
      const { code, status } = (error.cause ?? {}) as { code?: string, status?: number | null }
      if (status === 403 || status === 400) {
        throw new ConfigError('VAULT_TOKEN', `cannot ${what} in Vault at ${location} (${code ?? 'refused'}); the policy it needs is in ops/runbooks/vault.md`)
      }
    }
    throw error
  }
  await vault.check().catch((error: unknown) => refuse(error, 'use Vault'))
  const token = await vault.lookupSelf().catch((error: unknown) => refuse(error, 'be looked up (lookup-self)'))
  const probe = `agentidp/probe/${randomUUID()}`
  await vault.kv.write(probe, { probe: 'agentidp start-up check' }, 0).catch((error: unknown) => refuse(error, `write ${vault.mount}/data/agentidp/*`))
  await vault.kv.metadata(probe).catch((error: unknown) => refuse(error, `read ${vault.mount}/metadata/agentidp/*`))
  await vault.kv.list(SECRET_FOLDER).catch((error: unknown) => refuse(error, `list ${vault.mount}/metadata/${SECRET_FOLDER}/`))
  await vault.kv.erase(probe).catch((error: unknown) => refuse(error, `delete ${vault.mount}/metadata/agentidp/*`))
  return token
}

export default fp(async function vaultPlugin (app: FastifyInstance) {
  const { VAULT_ADDR, VAULT_TOKEN } = app.config
  if (VAULT_ADDR === undefined || VAULT_TOKEN === undefined) return
  const vault = createVaultCapability({ ...app.config, VAULT_ADDR, VAULT_TOKEN })
  const address = new URL(VAULT_ADDR)
  const token = await checkAccess(vault, `${address.hostname}:${address.port || (address.protocol === 'https:' ? '443' : '8200')}`)
  app.log.info({ mount: vault.mount, renewable: token.renewable, ttlSeconds: token.ttlSeconds }, 'vault: client secrets are kept in KV v2')
  app.decorate('vault', { ...vault, token: { renewable: token.renewable, ttlSeconds: token.ttlSeconds } })
}, { name: 'vault', dependencies: ['config'], fastify: '5.x' })
