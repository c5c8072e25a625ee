/**
 * Remote JSON documents the IdP trusts for a while: agents' and federated issuers' JWKS, OIDC
 * discovery. The fetching itself (SSRF checks, bounds) is services/remote-fetch.ts, re-exported
 * here so that callers have one module; this file adds the cache and discovery.
 */
import { fetchJson, RemoteDocumentError, type FetchPolicy } from './remote-fetch.js'

export { fetchJson, maxAgeOf, RemoteDocumentError, type FetchedJson, type FetchPolicy, type RemoteDocumentReason } from './remote-fetch.js'

export interface DocumentCachePolicy extends FetchPolicy {
  minCacheSeconds: number
  maxCacheSeconds: number
  /** The TTL when the answer says nothing about caching. */
  defaultCacheSeconds: number
  /** The least time between two fetches of one URL that `refresh` may cause. */
  refreshCooldownSeconds: number
  maxEntries: number
  /** Asked before every fetch (not before a cached answer): throwing refuses the fetch, as a failed one. */
  beforeFetch?: (url: string) => void
}

export interface DocumentCache<T> {
  get: (url: string, options?: { refresh?: boolean }) => Promise<T>
  forget: (url: string) => void
}

interface Entry<T> {
  value: T
  fetchedAt: number
  expiresAt: number
  /** When the last fetch of this URL started, whether it succeeded or not. */
  attemptedAt: number
  /** The last fetch failed and the value is being served stale. */
  failed: boolean
}

export function createDocumentCache<T> (policy: DocumentCachePolicy, parse: (json: unknown, url: string) => T): DocumentCache<T> {
  const entries = new Map<string, Entry<T>>() // in order of storing: the first is the oldest
  const loads = new Map<string, Promise<T>>()
  const cooldownMs = policy.refreshCooldownSeconds * 1000
  const maxCacheMs = policy.maxCacheSeconds * 1000

  function ttlSeconds (maxAgeSeconds: number | null): number {
    if (maxAgeSeconds === null) return policy.defaultCacheSeconds
    return Math.min(policy.maxCacheSeconds, Math.max(policy.minCacheSeconds, maxAgeSeconds))
  }

  function servesCached (entry: Entry<T>, now: number, refresh: boolean): boolean {
    const coolingDown = now - entry.attemptedAt < cooldownMs
    // refresh is for "unknown kid: refetch once"; the cooldown keeps callers from making us hammer a host
    if (now < entry.expiresAt) return !refresh || coolingDown
    // expired, and the last refetch failed: serve it stale for the cooldown rather than make every
    // caller wait for a host that is down
    return entry.failed && coolingDown && isYoungEnough(entry, now)
  }

  function isYoungEnough (entry: Entry<T>, now: number): boolean {
    return now - entry.fetchedAt < maxCacheMs
  }

  function store (url: string, entry: Entry<T>): void {
    entries.delete(url) // re-inserted last: the newest
    entries.set(url, entry)
    for (const oldest of entries.keys()) {
      if (entries.size <= policy.maxEntries) break
      entries.delete(oldest)
    }
  }

  function parseOrInvalid (json: unknown, url: string): T {
    try {
      return parse(json, url)
    } catch (error) {
      if (error instanceof RemoteDocumentError) throw error
      throw new RemoteDocumentError('invalid', error instanceof Error ? error.message : String(error), { cause: error })
    }
  }

  async function load (url: string, isCurrent: () => boolean): Promise<T> {
    const attemptedAt = Date.now()
    const previous = entries.get(url)
    if (previous !== undefined) previous.attemptedAt = attemptedAt
    try {
      policy.beforeFetch?.(url)
      const { json, maxAgeSeconds } = await fetchJson(url, policy)
      const value = parseOrInvalid(json, url)
      const fetchedAt = Date.now()
      // a URL forgotten while its fetch ran is not brought back by that fetch
      if (isCurrent()) store(url, { value, fetchedAt, expiresAt: fetchedAt + ttlSeconds(maxAgeSeconds) * 1000, attemptedAt, failed: false })
      return value
    } catch (error) {
      // stale-if-error: a host that is down, or serves a broken document, does not break what worked
      const stale = entries.get(url)
      if (stale === undefined || !isYoungEnough(stale, Date.now())) throw error
      stale.failed = true
      return stale.value
    }
  }

  function get (url: string, options: { refresh?: boolean } = {}): Promise<T> {
    const entry = entries.get(url)
    if (entry !== undefined && servesCached(entry, Date.now(), options.refresh === true)) return Promise.resolve(entry.value)
    const running = loads.get(url)
    if (running !== undefined) return running // one fetch per URL at a time, shared by all who ask
    // isCurrent is first called after the fetch's first await, when `current` is set
    const isCurrent = (): boolean => loads.get(url) === current
    const current: Promise<T> = load(url, isCurrent).finally(() => {
      if (isCurrent()) loads.delete(url)
    })
    loads.set(url, current)
    return current
  }

  function forget (url: string): void {
    entries.delete(url)
    loads.delete(url)
  }

  return { get, forget }
}
/**
 * OIDC discovery: the issuer's jwks_uri, from `<issuer>/.well-known/openid-configuration`. The
 * document must name exactly this issuer (OpenID Connect Discovery §4.3), or another issuer's
 * keys could be passed off as this one's.
 */
export async function discoverJwksUri (issuer: string, policy: FetchPolicy): Promise<string> {
  const { json } = await fetchJson(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`, policy)
  const document = (typeof json === 'object' && json !== null ? json : {}) as Record<string, unknown>
  const host = new URL(issuer).host
  if (document.issuer !== issuer) {
    throw new RemoteDocumentError('invalid', `${host}: the discovery document names another issuer`)
  }
  const jwksUri = document.jwks_uri
  if (typeof jwksUri !== 'string' || !URL.canParse(jwksUri) || new URL(jwksUri).protocol !== 'https:') {
    throw new RemoteDocumentError('invalid', `${host}: the discovery document has no https jwks_uri`)
  }
  return jwksUri
}
