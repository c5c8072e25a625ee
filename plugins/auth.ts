import fp from 'fastify-plugin'
import { decodeJwt, errors as joseErrors, type JWTPayload } from 'jose'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { findTokenState } from '../repositories/tokens.js'
import { findDelegationState } from '../repositories/delegations.js'
import { revocationReason, type RevocationReason } from '../services/revocation.js'
import { actorsOf, chainRevocationReason, chainScopes, MAX_CHAIN_LENGTH } from '../services/delegation.js'
import { dpopUnauthorized, RateLimitError, UnknownKeyError, unauthorized } from '../lib/errors.js'
import { DPOP_ALGORITHMS, DpopProofError } from '../services/dpop.js'
import { parseAuthorization } from '../lib/authorization.js'
import { isUuid } from '../lib/uuid.js'
import { credentialOfTokenId } from '../lib/token-id.js'
import { isCanonicalCompactJws } from '../lib/jws.js'

/**
 * Bearer authentication for every route under /api/ (unless the route says `config: { public: true }`,
 * as the OAuth endpoints do, which authenticate clients themselves). A token is accepted only when
 * its signature, alg, kid, typ, iss, aud and lifetime check out AND the server-side state says it
 * is still good now: it is not revoked, the credential that obtained it (named by its jti) is not
 * revoked, the agent is active and the token postdates the agent's "valid after" instant. Its
 * effective scope is its `scope` ∩ the agent's current capabilities.
 *
 * Failed Bearer authentications (no token, a malformed header, a token that does not check out)
 * count per IP (RATE_LIMIT_BEARER_FAILURES_PER_IP a minute, in Redis like every limit): under the
 * limit each is a 401 audited as `auth.failed`; once the count reaches it, the address is answered
 * 429 before any work until its window ends, and its refusals are audited through
 * `app.audit.limitBreached` (the first one, then one summary per minute), so a flood of
 * unauthenticated requests can neither cost a verification nor an audit row each. Successful
 * authentications never count. Whether an address is past its limit is remembered by this instance
 * from the count Redis returned at its last failure, so a good request costs no Redis round trip.
 */

export interface Principal {
  agentId: string
  clientId: string
  /** effective scopes: the token's scope narrowed to the agent's current capabilities */
  scopes: string[]
  jti: string
  iat: number
  exp: number
  /** a delegated (token-exchange) token: never grants self-service over its subject */
  delegated: boolean
  claims: JWTPayload
}

export type FailureReason =
  | 'malformed_token' | 'bad_signature' | 'unknown_kid' | 'bad_algorithm' | 'wrong_type' | 'wrong_issuer'
  | 'wrong_audience' | 'expired_token' | 'token_not_yet_valid' | 'missing_claim' | 'unknown_agent'
  | RevocationReason

/** Why a valid token may not be used as it was presented (RFC 9449 §7). */
export type BindingFailure = 'dpop_bound_token_as_bearer' | 'dpop_token_not_bound' | 'dpop_proof_invalid' | 'dpop_key_mismatch'

export type Validation =
  | { ok: true, principal: Principal }
  | { ok: false, reason: FailureReason, claimedAgentId: string | null }

export interface Auth {
  /** full validation, signature to revocation state; `audience` defaults to ISSUER_URL */
  validate (token: string, options?: { audience?: string | string[] | null }): Promise<Validation>
  /**
   * Checks the token's binding against how it was presented: a DPoP-bound token (cnf.jkt) only with
   * the DPoP scheme and a proof of its key, a token sent with the DPoP scheme only if bound. Null
   * when the presentation is right, else the failure and the 401 to answer.
   */
  checkBinding (request: FastifyRequest, scheme: string, token: string, principal: Principal): Promise<{ reason: BindingFailure, error: Error } | null>
  /** refuses (429, audited as a limit breach) an address past RATE_LIMIT_BEARER_FAILURES_PER_IP; call before any work */
  refuseFlooding (request: FastifyRequest): Promise<void>
  /**
   * A failed Bearer authentication: counted against the address and audited as `auth.failed`, then
   * `error` is thrown — or, when this failure takes the address past its limit, a 429.
   */
  reject (request: FastifyRequest, failure: { claimedAgentId: string | null, reason: string }, error: Error): Promise<never>
}

const DESCRIPTIONS: Record<FailureReason, string> = {
  malformed_token: 'the access token is malformed',
  bad_signature: 'the access token signature is invalid',
  unknown_kid: 'the access token was not signed by a key of this issuer',
  bad_algorithm: 'the access token algorithm is not accepted',
  wrong_type: 'the token is not an access token',
  wrong_issuer: 'the access token was issued by another issuer',
  wrong_audience: 'the access token is not meant for this API',
  expired_token: 'the access token has expired',
  token_not_yet_valid: 'the access token is not valid yet',
  missing_claim: 'the access token lacks a required claim',
  unknown_agent: 'the access token is no longer valid',
  agent_suspended: 'the access token is no longer valid',
  agent_decommissioned: 'the access token is no longer valid',
  token_revoked: 'the access token has been revoked',
  credential_revoked: 'the access token has been revoked',
  delegation_revoked: 'the access token has been revoked'
}

/** Maps jose's verification errors onto our reasons. */
function reasonOf (error: unknown): FailureReason | null {
  if (error instanceof UnknownKeyError) return 'unknown_kid'
  if (error instanceof joseErrors.JWTExpired) return 'expired_token'
  if (error instanceof joseErrors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case 'iss': return 'wrong_issuer'
      case 'aud': return 'wrong_audience'
      case 'typ': return 'wrong_type'
      case 'nbf': case 'iat': return 'token_not_yet_valid'
      default: return 'missing_claim'
    }
  }
  if (error instanceof joseErrors.JOSEAlgNotAllowed || error instanceof joseErrors.JOSENotSupported) return 'bad_algorithm'
  if (error instanceof joseErrors.JWSSignatureVerificationFailed) return 'bad_signature'
  if (error instanceof joseErrors.JOSEError) return 'malformed_token'
  return null
}

function claimedSubject (token: string): string | null {
  try {
    const sub = decodeJwt(token).sub
    return typeof sub === 'string' && isUuid(sub) ? sub : null
  } catch {
    return null
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    auth: Auth
  }
  interface FastifyRequest {
    principal?: Principal
  }
  interface FastifyContextConfig {
    /** skip Bearer authentication (OAuth endpoints authenticate clients themselves) */
    public?: boolean
  }
}

const FAILURE_WINDOW_MS = 60_000
// addresses remembered as past their limit; beyond this many, the oldest are forgotten (they are
// then refused after one more failure, when Redis says so again)
const MAX_BLOCKED_ADDRESSES = 10_000

export default fp(async function authPlugin (app: FastifyInstance) {
  const issuer = app.config.ISSUER_URL
  const failureLimit = app.config.RATE_LIMIT_BEARER_FAILURES_PER_IP
  const failuresPerIp = failureLimit === 0
    ? null
    : app.createRateLimit({ max: failureLimit, timeWindow: FAILURE_WINDOW_MS, keyGenerator: (request) => `bearerfail:${request.ip}` })
  /** address → when its window ends (ms), for the addresses whose failures reached the limit */
  const blockedUntil = new Map<string, number>()

  function block (ip: string, untilMs: number): void {
    blockedUntil.delete(ip)
    if (blockedUntil.size >= MAX_BLOCKED_ADDRESSES) blockedUntil.delete(blockedUntil.keys().next().value as string)
    blockedUntil.set(ip, untilMs)
  }

  async function refuse (request: FastifyRequest, retryAfterSeconds: number): Promise<never> {
    await app.audit.limitBreached(request, { reason: 'bearer_failures_rate_limited' })
    throw new RateLimitError(Math.max(1, retryAfterSeconds), 'rate_limited', 'too many failed authentications from this address; retry later')
  }

  async function refuseFlooding (request: FastifyRequest): Promise<void> {
    const until = blockedUntil.get(request.ip)
    if (until === undefined) return
    const now = Date.now()
    if (until <= now) {
      blockedUntil.delete(request.ip)
      return
    }
    await refuse(request, Math.ceil((until - now) / 1000))
  }

  async function reject (request: FastifyRequest, failure: { claimedAgentId: string | null, reason: string }, error: Error): Promise<never> {
    if (failuresPerIp !== null) {
      const window = await failuresPerIp(request)
      if (!window.isAllowed) {
        // the limit reached: the next request from there is refused before any work
        if (window.remaining === 0) block(request.ip, Date.now() + window.ttl)
        // past it (concurrent failures that all passed the check): a refusal, not one more audited failure
        if (window.isExceeded) await refuse(request, window.ttlInSeconds)
      }
    }
    await app.audit.authFailed(request, { ...failure, method: 'bearer' })
    throw error
  }

  async function validate (token: string, options: { audience?: string | string[] | null } = {}): Promise<Validation> {
    const audience = options.audience === undefined ? issuer : options.audience
    if (!isCanonicalCompactJws(token)) return { ok: false, reason: 'malformed_token', claimedAgentId: claimedSubject(token) }
    let claims: JWTPayload
    try {
      // an introspecting resource server may ask about any audience: pass every audience the token names
      const expected = audience ?? (decodeJwt(token).aud ?? issuer)
      claims = (await app.keys.verify(token, { issuer, audience: expected })).payload
    } catch (error) {
      const reason = reasonOf(error)
      if (reason === null) throw error
      return { ok: false, reason, claimedAgentId: claimedSubject(token) }
    }
    const sub = claims.sub as string
    const jti = claims.jti as string
    // only this issuer signs, but a malformed subject must never reach SQL as a 500
    if (!isUuid(sub)) return { ok: false, reason: 'malformed_token', claimedAgentId: null }
    const credentialId = credentialOfTokenId(jti)
    if (credentialId === null) return { ok: false, reason: 'malformed_token', claimedAgentId: sub }
    const granted = typeof claims.scope === 'string' ? claims.scope.split(' ').filter(Boolean) : []
    const principal = (scopes: string[], delegated: boolean): Validation => ({
      ok: true,
      principal: {
        agentId: sub,
        clientId: typeof claims.client_id === 'string' ? claims.client_id : sub,
        scopes,
        jti,
        iat: claims.iat as number,
        exp: claims.exp as number,
        delegated,
        claims
      }
    })
    if (claims.act !== undefined) {
      // a delegated token: alive only while every link of its chain is (services/delegation.ts)
      if (actorsOf(claims.act, MAX_CHAIN_LENGTH) === null) return { ok: false, reason: 'malformed_token', claimedAgentId: sub }
      const chain = await findDelegationState(app.pg, jti)
      if (chain === null || chain.agents[0] !== sub) return { ok: false, reason: 'token_revoked', claimedAgentId: sub }
      const reason = chainRevocationReason(chain)
      if (reason !== null) return { ok: false, reason, claimedAgentId: sub }
      return principal(chainScopes(granted, chain), true)
    }
    // the durable state, read now from PostgreSQL: the same answer on every instance at once,
    // and an unreadable state is an error (503), never a valid token
    const state = await findTokenState(app.pg, sub, credentialId, jti)
    if (state === null) return { ok: false, reason: 'unknown_agent', claimedAgentId: null }
    const reason = revocationReason(state, claims.iat as number)
    if (reason !== null) return { ok: false, reason, claimedAgentId: sub }
    return principal(granted.filter((scope) => state.capabilities.includes(scope)), false)
  }

  async function checkBinding (request: FastifyRequest, scheme: string, token: string, principal: Principal): Promise<{ reason: BindingFailure, error: Error } | null> {
    const cnf = principal.claims.cnf as { jkt?: unknown } | undefined
    const jkt = typeof cnf === 'object' && cnf !== null && typeof cnf.jkt === 'string' ? cnf.jkt : null
    const refusal = (reason: BindingFailure, detail: string, error: 'invalid_token' | 'invalid_dpop_proof') =>
      ({ reason, error: dpopUnauthorized(detail, error, DPOP_ALGORITHMS) })
    if (scheme === 'bearer') return jkt === null ? null : refusal('dpop_bound_token_as_bearer', 'the access token is DPoP-bound: send it as "DPoP <token>" with a DPoP proof', 'invalid_token')
    if (jkt === null) return refusal('dpop_token_not_bound', 'the access token is not DPoP-bound: send it as "Bearer <token>"', 'invalid_token')
    try {
      const proof = await app.dpop.resourceProof(request, token)
      return proof.jkt === jkt ? null : refusal('dpop_key_mismatch', 'the DPoP proof is signed by another key than the token is bound to', 'invalid_dpop_proof')
    } catch (error) {
      if (!(error instanceof DpopProofError)) throw error
      return refusal('dpop_proof_invalid', 'the DPoP proof is not valid', 'invalid_dpop_proof')
    }
  }

  async function authenticate (request: FastifyRequest): Promise<void> {
    await refuseFlooding(request)
    const authorization = parseAuthorization(request.headers.authorization)
    const scheme = authorization?.scheme
    if ((scheme !== 'bearer' && scheme !== 'dpop') || authorization?.credentials === null || authorization === null) {
      const missing = authorization === null
      return await reject(request, { claimedAgentId: null, reason: missing ? 'missing_token' : 'malformed_authorization' },
        unauthorized(missing ? 'an access token is required' : 'the Authorization header must be "Bearer <access token>" (or "DPoP <access token>" with a DPoP proof)', false))
    }
    const result = await validate(authorization.credentials)
    if (!result.ok) return await reject(request, { claimedAgentId: result.claimedAgentId, reason: result.reason }, unauthorized(DESCRIPTIONS[result.reason], true))
    const binding = await checkBinding(request, authorization.scheme, authorization.credentials, result.principal)
    if (binding !== null) return await reject(request, { claimedAgentId: result.principal.agentId, reason: binding.reason }, binding.error)
    request.principal = result.principal
  }

  app.decorate('auth', { validate, checkBinding, refuseFlooding, reject })
  app.decorateRequest('principal', undefined)

  app.addHook('onRoute', function requireBearer (route) {
    if (!route.url.startsWith('/api/') || route.config?.public === true) return
    const existing = route.onRequest === undefined ? [] : Array.isArray(route.onRequest) ? route.onRequest : [route.onRequest]
    route.onRequest = [authenticate, ...existing]
  })
}, { name: 'auth', dependencies: ['config', 'db', 'keys', 'audit', 'rate-limit', 'dpop'], fastify: '5.x' })
