import { readFileSync } from 'node:fs'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import type { Config } from './config.js'
import { createDocumentCache, RemoteDocumentError, type FetchPolicy } from '../services/remote-document.js'
import { AGENT_KEY_ALGORITHMS, FEDERATION_ALGORITHMS, MAX_AGENT_KEYS, MAX_ISSUER_KEYS, readFetchedJwks, type PublicKey } from '../lib/public-jwk.js'

/**
 * Public keys that live elsewhere: an agent's jwks_uri, a federated issuer's jwks_uri or the one
 * its OIDC discovery document names. Fetched SSRF-safely (https only, no private addresses unless
 * REMOTE_FETCH_ALLOW_PRIVATE_NETWORKS, bounded time and size, redirects only within the host:
 * services/remote-document.ts) and cached per instance within bounds, honouring Cache-Control. A
 * kid not in the cached set refetches once, at most once every 10 s per URL, so a
 * key rotation is picked up at once while nobody can make us hammer a host with made-up kids.
 */
const TIMEOUT_MS = 3000
const MAX_BYTES = 64 * 1024
/** the cache bounds of every such document */
export const DOCUMENT_CACHE = { minCacheSeconds: 60, maxCacheSeconds: 3600, defaultCacheSeconds: 300, refreshCooldownSeconds: 10, maxEntries: 1000 }

export interface RemoteKeys {
  /** an agent's keys at its jwks_uri (RS256 ≥ 2048, ES256, EdDSA) */
  agentKeys (uri: string, options?: { refresh?: boolean }): Promise<PublicKey[]>
  /** a federated issuer's keys at a jwks_uri */
  issuerKeys (uri: string, options?: { refresh?: boolean }): Promise<PublicKey[]>
  /** the jwks_uri named by the issuer's OIDC discovery document */
  discoveredJwksUri (issuer: string): Promise<string>
}

declare module 'fastify' {
  interface FastifyInstance { remoteKeys: RemoteKeys }
}

/** The discovery document's jwks_uri, once its issuer is the one asked for (OpenID Connect Discovery §4.3). */
function jwksUriOf (json: unknown, url: string): string {
  const document = typeof json === 'object' && json !== null ? json as { issuer?: unknown, jwks_uri?: unknown } : {}
  const expected = url.slice(0, -'/.well-known/openid-configuration'.length)
  if (document.issuer !== expected) throw new Error(`the discovery document names issuer ${String(document.issuer)}, not ${expected}`)
  if (typeof document.jwks_uri !== 'string' || !document.jwks_uri.startsWith('https://')) throw new Error('the discovery document has no https jwks_uri')
  return document.jwks_uri
}

/** How every document someone else names is fetched here (keys, discovery, client metadata): one policy from the configuration. */
export function outboundFetchPolicy (config: Config): FetchPolicy {
  const caFile = config.REMOTE_FETCH_CA_FILE
  return {
    allowPrivateNetworks: config.REMOTE_FETCH_ALLOW_PRIVATE_NETWORKS,
    ...(caFile === undefined ? {} : { ca: readFileSync(caFile, 'utf8') }),
    timeoutMs: TIMEOUT_MS,
    maxBytes: MAX_BYTES
  }
}

export default fp(async function remoteKeysPlugin (app: FastifyInstance) {
  const policy = outboundFetchPolicy(app.config)
  const agentKeys = createDocumentCache({ ...policy, ...DOCUMENT_CACHE }, (json) => readFetchedJwks(json, { algorithms: AGENT_KEY_ALGORITHMS, maxKeys: MAX_AGENT_KEYS }))
  const issuerKeys = createDocumentCache({ ...policy, ...DOCUMENT_CACHE }, (json) => readFetchedJwks(json, { algorithms: FEDERATION_ALGORITHMS, maxKeys: MAX_ISSUER_KEYS }))
  const discovery = createDocumentCache({ ...policy, ...DOCUMENT_CACHE }, jwksUriOf)

  const remoteKeys: RemoteKeys = {
    agentKeys: async (uri, options) => await agentKeys.get(uri, options),
    issuerKeys: async (uri, options) => await issuerKeys.get(uri, options),
    async discoveredJwksUri (issuer) {
      if (!issuer.startsWith('https://')) throw new RemoteDocumentError('not_https', 'OIDC discovery needs an https issuer')
      return await discovery.get(`${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`)
    }
  }
  app.decorate('remoteKeys', remoteKeys)
}, { name: 'remote-keys', dependencies: ['config'], fastify: '5.x' })
