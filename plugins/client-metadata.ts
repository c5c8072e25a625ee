import { createHash } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { createDocumentCache, RemoteDocumentError } from '../services/remote-document.js'
import { DOCUMENT_CACHE, outboundFetchPolicy } from './remote-keys.js'
import { AssertionRefused } from '../services/assertions.js'
import type { AuditEntry } from '../services/audit/record.js'
import { countAgentsOfOwner, insertClientMetadataAgent, lockOwner, updateAgentFields } from '../repositories/agents.js'
import { findKeyClient, replaceAgentKeys, type KeyClientRecord } from '../repositories/agent-keys.js'
import { inTransaction } from '../repositories/transaction.js'
import { AGENT_KEY_ALGORITHMS, MAX_AGENT_KEYS, readFetchedJwks, type PublicKey } from '../lib/public-jwk.js'
import { uuidV5 } from '../lib/uuid.js'

/**
 * Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document), for agents outside
 * the registry: a client_id that is an https URL names a JSON document at that URL describing the
 * client. plugins/assertion-auth.ts takes a client assertion whose `iss` = `sub` is such a URL to
 * here:
 *
 * - the URL must be https, in canonical form (`new URL(u).href === u`: no dot segments, no default
 *   port, a lower-case host), with a path, without a fragment or credentials, at most 2048 chars;
 * - its host must have scopes in the policy (`clientMetadataHosts` of policies/data/scopes.json,
 *   `app.policy.scopesForClientHost`): a host without a grant is refused before anything is
 *   fetched or stored;
 * - the document is fetched like any remote key set (services/remote-document.ts: https only, no
 *   private address unless REMOTE_FETCH_ALLOW_PRIVATE_NETWORKS, 3 s, 64 KiB, Cache-Control within
 *   60 s–1 h, a refetch for an unknown kid at most every 10 s per URL), and at most
 *   10 fetches a minute per host on this instance, so a flood of made-up URLs under one host can't
 *   make us hammer it;
 * - it must be a JSON object whose `client_id` is the URL exactly, with `jwks` (inline) or
 *   `jwks_uri` (https), not both, and a `token_endpoint_auth_method`, if given, of
 *   `private_key_jwt`. Every other member (`client_name`, `logo_uri`, `redirect_uris`, `scope`,
 *   `contacts`, …) is ignored: never a reason to refuse.
 *
 * The client is then an agent of the registry, its "shadow": agent_id a UUID v5 of the URL,
 * `client_id_url` the URL, created on its first successful authentication (audited
 * `agent.created`), its capabilities the host's grant at each authentication, its keys the
 * document's, synced with `replaceAgentKeys` each time this instance fetches the document anew —
 * so a key removed from the document revokes what it authenticated, and quota, revocation,
 * suspension and the audit trail work as for any agent.
 */
const FETCHES_PER_HOST_PER_MINUTE = 10
const MAX_TRACKED_HOSTS = 10_000
const MAX_URL_LENGTH = 2048
// the owner label `cimd:<host>` fits agents.owner (128)
const MAX_HOST_LENGTH = 123

/** A client's metadata document, as far as this server reads it. */
export interface ClientMetadataDocument {
  /** the URL, also the document's client_id */
  clientId: string
  host: string
  /** the usable keys of an inline `jwks`; null with a jwks_uri */
  keys: PublicKey[] | null
  jwksUri: string | null
}

export interface ClientMetadata {
  /** whether a client assertion's `iss` = `sub` means a metadata document: it is spelled as a URL (any scheme, to refuse it by name) */
  names (iss: string): boolean
  /** the URL's host; throws AssertionRefused('client_metadata_url_invalid') for a URL that can't be a client id */
  hostOf (url: string): string
  /** the document at `url` (cached), refused with AssertionRefused('client_metadata_invalid' | '…_unavailable' | '…_rate_limited') */
  document (url: string, options?: { refresh?: boolean }): Promise<ClientMetadataDocument>
  /**
   * The client's agent, created or brought up to date with `document` and `capabilities` (keys synced
   * when this instance fetched the document anew). A suspended or decommissioned agent is returned
   * unchanged, for the caller to refuse.
   */
  agentFor (request: FastifyRequest | undefined, document: ClientMetadataDocument, capabilities: string[]): Promise<KeyClientRecord>
}

declare module 'fastify' {
  interface FastifyInstance { clientMetadata: ClientMetadata }
}

class FetchesRateLimited extends Error {}

function invalid (message: string): never {
  throw new RemoteDocumentError('invalid', message)
}

/** The document's members this server uses; every other member is ignored. */
function readClientMetadata (json: unknown, url: string): ClientMetadataDocument {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) invalid('the client metadata document is not a JSON object')
  const document = json as Record<string, unknown>
  if (document.client_id !== url) invalid('the document\'s client_id is not its URL')
  const method = document.token_endpoint_auth_method
  if (method !== undefined && method !== 'private_key_jwt') invalid('token_endpoint_auth_method is not private_key_jwt')
  const { jwks, jwks_uri: jwksUri } = document
  if (jwks !== undefined && jwksUri !== undefined) invalid('the document has both jwks and jwks_uri')
  const host = new URL(url).host
  if (typeof jwksUri === 'string') {
    if (!URL.canParse(jwksUri) || new URL(jwksUri).protocol !== 'https:') invalid('jwks_uri is not an https URL')
    return { clientId: url, host, keys: null, jwksUri }
  }
  if (jwksUri !== undefined) invalid('jwks_uri is not a string')
  if (jwks === undefined) invalid('the document has neither jwks nor jwks_uri')
  // keys this server can't use (another algorithm, an encryption key) are skipped, as in a fetched JWKS
  const keys = readFetchedJwks(jwks, { algorithms: AGENT_KEY_ALGORITHMS, maxKeys: MAX_AGENT_KEYS })
  const unique = keys.filter((key, index) => keys.findIndex((other) => other.thumbprint === key.thumbprint) === index)
  if (unique.length === 0) invalid('jwks holds no usable public key')
  return { clientId: url, host, keys: unique, jwksUri: null }
}

function sameSet (a: Iterable<string>, b: Iterable<string>): boolean {
  const left = new Set(a)
  const right = new Set(b)
  return left.size === right.size && [...left].every((item) => right.has(item))
}

/** Whether the agent's active key rows are the document's keys already. */
function keysMatch (record: KeyClientRecord, document: ClientMetadataDocument): boolean {
  if (document.keys === null) return record.jwksUri === document.jwksUri && record.jwksUriCredential !== null && record.keyCredentials.size === 0
  return record.jwksUri === null && sameSet(record.keyCredentials.keys(), document.keys.map((key) => key.thumbprint))
}

export default fp(async function clientMetadataPlugin (app: FastifyInstance) {
  // the same bounds as every fetch of a document someone else names (plugins/remote-keys.ts)
  const policy = outboundFetchPolicy(app.config)
  const maxAgentsPerHost = app.config.MAX_AGENTS_PER_OWNER
  /** per host: the start of its current minute and the fetches in it (in order of the minute's start) */
  const windows = new Map<string, { startedAt: number, fetches: number }>()
  /** documents whose keys this instance has written to their agent: a document is synced once per fetch */
  const synced = new WeakSet<ClientMetadataDocument>()

  function admitFetch (url: string): void {
    const host = new URL(url).host
    const now = Date.now()
    let window = windows.get(host)
    if (window === undefined || now - window.startedAt >= 60_000) {
      window = { startedAt: now, fetches: 0 }
      windows.delete(host)
      windows.set(host, window)
      if (windows.size > MAX_TRACKED_HOSTS) windows.delete(windows.keys().next().value as string)
    }
    if (window.fetches >= FETCHES_PER_HOST_PER_MINUTE) throw new FetchesRateLimited(`${host}: too many client metadata fetches this minute`)
    window.fetches += 1
  }

  const documents = createDocumentCache({ ...policy, ...DOCUMENT_CACHE, beforeFetch: admitFetch }, readClientMetadata)

  function hostOf (value: string): string {
    const refuse = (): never => { throw new AssertionRefused('client_metadata_url_invalid') }
    if (value.length > MAX_URL_LENGTH || value.includes('#') || !URL.canParse(value)) refuse()
    const url = new URL(value)
    if (url.protocol !== 'https:' || url.username !== '' || url.password !== '' || url.pathname === '/' || url.href !== value) refuse()
    if (url.host.length > MAX_HOST_LENGTH) refuse()
    return url.host
  }

  async function document (url: string, options: { refresh?: boolean } = {}): Promise<ClientMetadataDocument> {
    try {
      return await documents.get(url, options)
    } catch (error) {
      if (error instanceof FetchesRateLimited) throw new AssertionRefused('client_metadata_rate_limited')
      const reason = error instanceof RemoteDocumentError ? error.reason : 'network'
      app.log.warn({ host: new URL(url).host, reason, err: { message: (error as Error).message } }, 'client metadata document refused')
      throw new AssertionRefused(reason === 'invalid' || reason === 'not_json' || reason === 'too_large' ? 'client_metadata_invalid' : 'client_metadata_unavailable')
    }
  }

  async function agentFor (request: FastifyRequest | undefined, document: ClientMetadataDocument, capabilities: string[]): Promise<KeyClientRecord> {
    const agentId = uuidV5(document.clientId)
    const current = await findKeyClient(app.pg, agentId)
    if (current !== null && current.clientIdUrl !== document.clientId) throw new AssertionRefused('client_metadata_conflict')
    if (current !== null && current.agentStatus !== 'active') return current
    // keys are written once per fetch of the document: an instance still holding an older copy
    // must not undo what another wrote from a newer one
    const syncKeys = !synced.has(document)
    if (current !== null && (!syncKeys || keysMatch(current, document)) && sameSet(current.capabilities, capabilities)) {
      synced.add(document)
      return current
    }
    const owner = `cimd:${document.host}`
    const { record, changed } = await inTransaction(app.pg.pool, async function syncClientMetadataAgent (db) {
      let created = false
      if (current === null) {
        await lockOwner(db, owner)
        if (await countAgentsOfOwner(db, owner) >= maxAgentsPerHost) throw new AssertionRefused('client_metadata_host_full')
        const email = `${createHash('sha256').update(document.clientId).digest('hex').slice(0, 32)}@cimd.invalid`
        created = await insertClientMetadataAgent(db, { agentId, clientIdUrl: document.clientId, email, owner, capabilities })
      }
      const locked = await findKeyClient(db, agentId, { forUpdate: true })
      if (locked === null || locked.clientIdUrl !== document.clientId) throw new AssertionRefused('client_metadata_conflict')
      if (locked.agentStatus !== 'active') return { record: locked, changed: false }
      const events: AuditEntry[] = []
      if (created) {
        events.push({
          action: 'agent.created',
          agentId,
          metadata: { via: 'client_metadata', clientIdUrl: document.clientId, agentType: 'custom', deploymentEnv: 'production', capabilities, authMethods: ['private_key_jwt'] }
        })
      } else if (!sameSet(locked.capabilities, capabilities)) {
        await updateAgentFields(db, agentId, { capabilities })
        events.push({ action: 'agent.updated', agentId, metadata: { changed: ['capabilities'], via: 'client_metadata', clientIdUrl: document.clientId, capabilities } })
      }
      if ((created || syncKeys) && !keysMatch(locked, document)) {
        const keys = document.keys ?? []
        const change = await replaceAgentKeys(db, agentId, {
          jwks: document.keys === null ? null : { keys: keys.map((key) => key.jwk) },
          jwksUri: document.jwksUri,
          thumbprints: keys.map((key) => key.thumbprint)
        })
        events.push({
          action: 'agent.keys_updated',
          agentId,
          metadata: {
            via: 'client_metadata',
            clientIdUrl: document.clientId,
            thumbprints: keys.map((key) => key.thumbprint),
            kids: keys.flatMap((key) => key.kid === null ? [] : [key.kid]),
            jwksUri: document.jwksUri,
            addedCredentials: change.added,
            revokedCredentials: change.removed
          }
        })
      }
      if (events.length > 0) {
        if (request === undefined) throw new Error('a client metadata agent changes only with a request to record it')
        await app.audit.recordMany(request, events, db)
      }
      return { record: await findKeyClient(db, agentId) as KeyClientRecord, changed: events.length > 0 && !created }
    })
    synced.add(document)
    // a removed key's tokens, narrower capabilities: every instance forgets what it cached of the agent
    if (changed) await app.clientDirectory.changed({ agentId })
    return record
  }

  app.decorate('clientMetadata', {
    names: (iss) => /^[a-z][a-z0-9+.-]*:\/\//i.test(iss),
    hostOf,
    document,
    agentFor
  } satisfies ClientMetadata)
}, { name: 'client-metadata', dependencies: ['config', 'db', 'audit', 'client-directory', 'remote-keys'], fastify: '5.x' })
