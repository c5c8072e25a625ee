import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { ClientRecord } from '../repositories/credentials.js'
import { credentialIdOf, decoy, verifySecret } from '../services/secrets.js'
import { storedHashOf } from './vault.js'
import { OAuthError, RateLimitError } from '../lib/errors.js'
import { parseAuthorization } from '../lib/authorization.js'
import { createKeyedLimiter, createLimiter } from '../lib/limiter.js'
import { AssertionFailure, CLIENT_ASSERTION_TYPE } from '../services/assertions.js'

/**
 * OAuth client authentication (RFC 6749 §2.3.1): client_secret_basic or client_secret_post, never
 * both. Every failure looks the same from outside — unknown client, wrong secret, revoked or
 * expired credential, decommissioned agent: one 401 body after the same work (one database lookup,
 * one argon2 verification, real or decoy). Failures count against the caller's IP; past
 * RATE_LIMIT_AUTH_FAILURES_PER_IP a minute, that IP is refused before any work, while the agent
 * itself, authenticating from elsewhere, is unaffected: nobody can lock an agent out by failing
 * on its client_id.
 *
 * The limit holds under concurrency: a verification is reserved before it runs, and an IP's
 * failures so far plus its verifications in flight — both in Redis, shared by every instance —
 * never exceed the limit; the rest are refused at once with 429. Counting only after the
 * verification let 300 simultaneous wrong secrets run 231 of them; counting the reservations per
 * instance let two instances behind one load balancer run twice the limit (60 of 300). And each IP's verifications wait in a queue of their
 * own, one at a time, before the shared argon2 slots: one address can't fill the shared queue and
 * make every other client's first authentication wait behind it. A success releases its
 * reservation without counting (successful authentications don't count against the IP).
 *
 * argon2 stays off the hot path: a secret verified once is remembered as an HMAC under a
 * per-process key, bound to the stored hash it matched. The credential's and agent's state comes
 * from the client directory (plugins/client-directory.ts), which forgets on every announced change,
 * so revocation, expiry and suspension apply at once, and a rotation (new stored hash) makes the
 * remembered digest useless at once.
 */

export interface AuthenticatedClient {
  agentId: string
  credentialId: string
  capabilities: string[]
  /** the agent's audiences (RFC 8707), read with the rest of the client: what `resource` may name besides the issuer */
  audiences: string[]
  validAfterMs: number
  /**
   * the stored hash the secret was verified against: the issuance write checks it is still the one
   * (a rotation since refuses the token); `credential:<kind>` for a key, jwks_uri or federated row
   */
  secretHash: string
  /** private_key_jwt: a client_assertion; jwt_bearer: the grant's assertion (plugins/assertion-auth.ts) */
  method: 'client_secret_basic' | 'client_secret_post' | 'private_key_jwt' | 'jwt_bearer'
  /** the agent's own assertion, to be recorded as used with the issuance (else it already is, or is federated) */
  assertion?: { key: string, expiresAt: number }
  /** every token of this agent must be DPoP-bound (RFC 9449) */
  dpopBound: boolean
}

interface PresentedCredentials { clientId: string, secret: string, method: 'client_secret_basic' | 'client_secret_post' }

export interface ClientCredentialFields { client_id?: string, client_secret?: string, client_assertion?: string, client_assertion_type?: string }

export interface AuthenticateOptions {
  /** the token endpoint: an assertion's jti is recorded durably with the issuance, not before */
  issuing?: boolean
}

export interface ClientAuthenticator {
  /** true when the request carries client credentials (header or body), whether valid or not */
  presents (request: FastifyRequest, body: ClientCredentialFields): boolean
  authenticate (request: FastifyRequest, body: ClientCredentialFields, options?: AuthenticateOptions): Promise<AuthenticatedClient>
  /**
   * The jwt-bearer grant (RFC 7523 §2.1): the agent its `assertion` maps to. Client authentication,
   * when the request carries one too, must be that same agent's. A refused assertion is 400
   * invalid_grant, counted against the address and audited like a failed client authentication.
   */
  authenticateGrant (request: FastifyRequest, body: ClientCredentialFields & { assertion: string }): Promise<AuthenticatedClient>
}

const FAILURE_WINDOW_SECONDS = 60
// reservations a dead instance left behind expire this long after the address's last reservation
const RESERVATION_TTL_MS = FAILURE_WINDOW_SECONDS * 1000
// a remembered secret not used for this long is forgotten (each use keeps it this much longer)
const DIGEST_TTL_MS = 10 * 60_000
const DIGEST_MAX_ENTRIES = 10_000
// argon2 runs on libuv's 4 threads, which RS256 signing also uses: keep two of them for signing
const ARGON2_CONCURRENCY = 2
const ARGON2_MAX_QUEUED = 200
// one address's verifications at a time: it holds at most one of the shared slots or queue places
const ARGON2_PER_IP_CONCURRENCY = 1

function invalidRequest (description: string): OAuthError {
  return new OAuthError(400, 'invalid_request', description)
}

/** RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64. */
function fromBasicCredentials (credentials: string | null): PresentedCredentials | null {
  if (credentials === null) return null
  const decoded = Buffer.from(credentials, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon < 0) return null
  try {
    const clientId = decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '))
    const secret = decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' '))
    return { clientId, secret, method: 'client_secret_basic' as const }
  } catch {
    return null
  }
}

interface Remembered { storedHash: string, digest: Buffer, expiresAt: number }

declare module 'fastify' {
  interface FastifyInstance { clientAuth: ClientAuthenticator }
  interface FastifyRequest {
    /** the client authenticated by its credentials on this request, if any */
    oauthClient: AuthenticatedClient | null
  }
}

export default fp(async function clientAuthPlugin (app: FastifyInstance) {
  const failureLimit = app.config.RATE_LIMIT_AUTH_FAILURES_PER_IP
  // counted only on failure, so an agent's own successful authentications never use up its IP's budget
  const failuresPerIp = failureLimit === 0
    ? null
    : app.createRateLimit({ max: failureLimit, timeWindow: FAILURE_WINDOW_SECONDS * 1000, keyGenerator: (request) => `authfail:${request.ip}` })
  const hmacKey = randomBytes(32)
  const remembered = new Map<string, Remembered>()
  const argon2Slots = createLimiter(ARGON2_CONCURRENCY, ARGON2_MAX_QUEUED)
  const argon2PerIp = createKeyedLimiter(ARGON2_PER_IP_CONCURRENCY, ARGON2_MAX_QUEUED)
  await decoy()

  const digestOf = (secret: string) => createHmac('sha256', hmacKey).update(secret).digest()

  function remember (credentialId: string, storedHash: string, secret: string): void {
    if (remembered.size >= DIGEST_MAX_ENTRIES) remembered.delete(remembered.keys().next().value as string)
    remembered.set(credentialId, { storedHash, digest: digestOf(secret), expiresAt: Date.now() + DIGEST_TTL_MS })
  }

  /** whether `secret` is the one this instance remembers for the credential (its hash unchecked yet: see `recalls`) */
  function remembersSecret (credentialId: string, secret: string): boolean {
    const entry = remembered.get(credentialId)
    return entry !== undefined && entry.expiresAt > Date.now() && timingSafeEqual(entry.digest, digestOf(secret))
  }

  /**
   * Whether the secret is the remembered one, for the hash the row names now. A recalled entry is
   * kept DIGEST_TTL_MS longer and moved to the back of the eviction order: an agent in use never
   * goes back to argon2 (with a fixed lifetime, a fleet behind one address re-verified all at once
   * every ten minutes, and the per-address reservation refused part of it with 429, bench/README.md).
   */
  function recalls (record: ClientRecord, secret: string): boolean {
    const entry = remembered.get(record.credentialId)
    const now = Date.now()
    if (entry === undefined || entry.storedHash !== record.secretHash || entry.expiresAt <= now) return false
    if (!timingSafeEqual(entry.digest, digestOf(secret))) return false
    remembered.delete(record.credentialId)
    remembered.set(record.credentialId, { ...entry, expiresAt: now + DIGEST_TTL_MS })
    return true
  }

  async function argon2 (ip: string, hash: string, secret: string): Promise<boolean> {
    return await argon2PerIp.run(ip, () => argon2Slots.run(() => verifySecret(hash, secret)))
  }

  async function verifyAndRemember (ip: string, record: ClientRecord, secret: string): Promise<boolean> {
    const stored = await storedHashOf(app, record)
    const valid = await argon2(ip, stored ?? await decoy(), secret) && stored !== null
    // bound to what the row names (the hash, or the Vault path and version): a rotation unbinds it
    if (valid) remember(record.credentialId, record.secretHash as string, secret)
    return valid
  }

  /** The presented credentials; 'malformed' for an unreadable Basic header; null when there are none. */
  function presented (request: FastifyRequest, body: ClientCredentialFields): PresentedCredentials | 'malformed' | null {
    const authorization = parseAuthorization(request.headers.authorization)
    const basic = authorization?.scheme === 'basic'
    if (basic && body.client_secret !== undefined) {
      throw invalidRequest('client credentials were sent both in the Authorization header and in the body')
    }
    if (basic) {
      const credentials = fromBasicCredentials(authorization.credentials)
      if (credentials === null) return 'malformed'
      if (body.client_id !== undefined && body.client_id !== credentials.clientId) {
        throw invalidRequest('client_id in the body does not match the Authorization header')
      }
      return credentials
    }
    if (body.client_secret !== undefined) {
      if (body.client_id === undefined) throw invalidRequest('client_id is required with client_secret')
      return { clientId: body.client_id, secret: body.client_secret, method: 'client_secret_post' }
    }
    return null
  }

  /** Records a failed authentication (the IP's failure count, then audit), then gives the one 401 answer. */
  async function reject (request: FastifyRequest, method: AuthenticatedClient['method'] | null, claimedClientId: string | null, reason: string): Promise<never> {
    // counted first: a reservation is released only once its failure is in the count
    if (failuresPerIp !== null) await failuresPerIp(request)
    await app.audit.authFailed(request, { claimedAgentId: claimedClientId, reason, method: method === 'private_key_jwt' ? 'private_key_jwt' : 'client_credentials' })
    throw new OAuthError(401, 'invalid_client', 'client authentication failed',
      method === 'client_secret_basic' ? { 'www-authenticate': 'Basic realm="agentidp", charset="UTF-8"' } : {})
  }

  async function refuse (request: FastifyRequest, retryAfterSeconds: number): Promise<never> {
    // the first refusal from an address is written at once, the next ones summarised (plugins/audit.ts)
    await app.audit.limitBreached(request, { reason: 'auth_failures_rate_limited' })
    throw new RateLimitError(Math.max(1, retryAfterSeconds), 'rate_limited', 'too many failed client authentications from this address; retry later')
  }

  /** Peeks at the IP's failure count: an IP at its limit is refused before any work is done. */
  async function refuseFloodingIp (request: FastifyRequest): Promise<void> {
    if (failuresPerIp === null) return
    const window = await failuresPerIp(request, { increment: false })
    if (!window.isAllowed && window.remaining === 0) await refuse(request, window.ttlInSeconds)
  }

  /**
   * Reserves one verification for the request's IP, or refuses it (429) when the IP's failures so
   * far plus its verifications in flight on any instance have reached the limit. The reservation is
   * taken (an atomic increment of the address's shared counter) before the count is read, so of two
   * overlapping requests, wherever they run, the later one always sees the earlier: still in
   * flight, or — since a failure is released only after it is counted — in the count. The caller
   * releases it once the outcome is settled.
   */
  async function reserveVerification (request: FastifyRequest): Promise<() => void> {
    if (failuresPerIp === null) return () => {}
    const key = `authfail-inflight:${request.ip}`
    const othersInFlight = await app.cache.reserve(key, RESERVATION_TTL_MS) - 1
    let released = false
    const release = () => {
      if (released) return
      released = true
      // sent after the failure's count (same connection, in order); a lost release expires with the key
      app.cache.release(key).catch((error: unknown) => { app.log.warn({ err: error }, 'could not release a verification reservation; it expires with its key') })
    }
    try {
      const window = await failuresPerIp(request, { increment: false })
      const failures = window.isAllowed ? 0 : failureLimit - window.remaining
      if (!window.isAllowed && failures + othersInFlight >= failureLimit) {
        release()
        await refuse(request, window.ttlInSeconds)
      }
    } catch (error) {
      release()
      throw error
    }
    return release
  }

  /**
   * private_key_jwt (RFC 7523 §2.2): the only client authentication of the request, its failures
   * answered, counted and audited as a wrong secret's are (one 401 body whatever the reason).
   */
  async function byAssertion (request: FastifyRequest, body: ClientCredentialFields, options: AuthenticateOptions): Promise<AuthenticatedClient> {
    if (parseAuthorization(request.headers.authorization)?.scheme === 'basic' || body.client_secret !== undefined) {
      throw invalidRequest('use one client authentication method: client_assertion, HTTP Basic or client_secret')
    }
    if (body.client_assertion === undefined) throw invalidRequest('client_assertion is required with client_assertion_type')
    if (body.client_assertion_type !== CLIENT_ASSERTION_TYPE) throw invalidRequest(`client_assertion_type must be ${CLIENT_ASSERTION_TYPE}`)
    try {
      return await app.assertionAuth.authenticate(body.client_assertion, {
        ...(body.client_id === undefined ? {} : { clientId: body.client_id }), recordNow: options.issuing !== true, method: 'private_key_jwt', request
      })
    } catch (error) {
      if (!(error instanceof AssertionFailure)) throw error
      if (error.unauthorizedClient) {
        // a suspended agent proved who it is; a metadata document's host without a grant proved nothing: it counts
        if (error.reason !== 'agent_suspended' && failuresPerIp !== null) await failuresPerIp(request)
        await app.audit.authFailed(request, { claimedAgentId: error.claimedAgentId, reason: error.reason, method: 'private_key_jwt' })
        throw new OAuthError(400, 'unauthorized_client', error.reason === 'agent_suspended' ? 'the client is suspended' : 'this client is not authorized at this server')
      }
      return await reject(request, 'private_key_jwt', error.claimedAgentId, error.reason)
    }
  }

  async function verify (request: FastifyRequest, credentials: PresentedCredentials): Promise<AuthenticatedClient> {
    const credentialId = credentialIdOf(credentials.secret)
    // A secret this instance verified recently costs no argon2, so it needs no reservation; any
    // other is reserved before the lookup, so that a refused attempt costs no database work either.
    let release = credentialId !== null && remembersSecret(credentialId, credentials.secret) ? null : await reserveVerification(request)
    try {
      const record = credentialId === null ? null : await app.clientDirectory.find(credentialId)
      const matches = record !== null && record.agentId === credentials.clientId.toLowerCase()
      const usable = matches && record.credentialStatus === 'active' && record.agentStatus !== 'decommissioned' ? record : null
      if (usable === null || !recalls(usable, credentials.secret)) {
        // remembered, but against a hash that has changed since (a rotation) or expired: verified after all
        release ??= await reserveVerification(request)
        // the same argon2 work whether or not there is a real hash to compare against
        const valid = usable !== null
          ? await verifyAndRemember(request.ip, usable, credentials.secret)
          : await argon2(request.ip, await decoy(), credentials.secret) && false
        if (!valid) {
          const reason = record === null || !matches
            ? (credentialId === null ? 'malformed_secret' : 'unknown_client')
            : record.credentialStatus !== 'active' ? `${record.credentialStatus}_credential`
              : record.agentStatus === 'decommissioned' ? 'agent_decommissioned' : 'bad_secret'
          return await reject(request, credentials.method, credentials.clientId, reason)
        }
      }
      const client = usable as ClientRecord
      if (client.agentStatus === 'suspended') {
        await app.audit.authFailed(request, { claimedAgentId: client.agentId, reason: 'agent_suspended', method: 'client_credentials' })
        throw new OAuthError(400, 'unauthorized_client', 'the client is suspended')
      }
      // an agent moved off secrets (authMethods) is refused like a wrong secret
      if (!client.authMethods.includes(credentials.method)) return await reject(request, credentials.method, credentials.clientId, 'auth_method_not_allowed')
      return {
        agentId: client.agentId,
        credentialId: client.credentialId,
        capabilities: client.capabilities,
        audiences: client.audiences,
        validAfterMs: client.validAfterMs,
        secretHash: client.secretHash as string,
        method: credentials.method,
        dpopBound: client.dpopBound
      }
    } finally {
      release?.()
    }
  }

  function presents (request: FastifyRequest, body: ClientCredentialFields): boolean {
    return parseAuthorization(request.headers.authorization)?.scheme === 'basic' || body.client_secret !== undefined || body.client_id !== undefined ||
      body.client_assertion !== undefined || body.client_assertion_type !== undefined
  }

  async function authenticate (request: FastifyRequest, body: ClientCredentialFields, options: AuthenticateOptions = {}): Promise<AuthenticatedClient> {
    await refuseFloodingIp(request)
    if (body.client_assertion !== undefined || body.client_assertion_type !== undefined) {
      request.oauthClient = await byAssertion(request, body, options)
      return request.oauthClient
    }
    const credentials = presented(request, body)
    if (credentials === null) return await reject(request, null, body.client_id ?? null, 'no_client_credentials')
    if (credentials === 'malformed') return await reject(request, 'client_secret_basic', null, 'malformed_basic_header')
    request.oauthClient = await verify(request, credentials)
    return request.oauthClient
  }

  async function grantAssertion (request: FastifyRequest, assertion: string, clientId: string | undefined): Promise<AuthenticatedClient> {
    try {
      return await app.assertionAuth.authenticate(assertion, { ...(clientId === undefined ? {} : { clientId }), recordNow: false, method: 'jwt_bearer' })
    } catch (error) {
      if (!(error instanceof AssertionFailure)) throw error
      if (failuresPerIp !== null) await failuresPerIp(request)
      await app.audit.authFailed(request, { claimedAgentId: error.claimedAgentId, reason: error.reason, method: 'jwt_bearer' })
      if (error.unauthorizedClient) throw new OAuthError(400, 'unauthorized_client', 'the agent is suspended')
      throw new OAuthError(400, 'invalid_grant', 'the assertion is not valid')
    }
  }

  async function authenticateGrant (request: FastifyRequest, body: ClientCredentialFields & { assertion: string }): Promise<AuthenticatedClient> {
    await refuseFloodingIp(request)
    const authenticatesClient = parseAuthorization(request.headers.authorization)?.scheme === 'basic' ||
      body.client_secret !== undefined || body.client_assertion !== undefined || body.client_assertion_type !== undefined
    // a client assertion next to the grant's is recorded as used at once: the issuance records the grant's
    const client = authenticatesClient ? await authenticate(request, body, { issuing: false }) : null
    const agent = await grantAssertion(request, body.assertion, client?.agentId ?? body.client_id)
    request.oauthClient = agent
    return agent
  }

  app.decorate('clientAuth', { presents, authenticate, authenticateGrant } satisfies ClientAuthenticator)
  app.decorateRequest('oauthClient', null)
}, { name: 'client-auth', dependencies: ['config', 'db', 'cache', 'rate-limit', 'audit', 'client-directory', 'assertion-auth'], fastify: '5.x' })
