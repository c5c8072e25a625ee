import { createPublicKey, generateKeyPairSync, type JsonWebKey, type KeyObject } from 'node:crypto'
import { decodeJwt, decodeProtectedHeader, jwtVerify, type JWTPayload, type ProtectedHeaderParameters } from 'jose'
import type { PublicKey } from '../lib/public-jwk.js'
import { isCanonicalCompactJws } from '../lib/jws.js'

/**
 * JWT assertions (RFC 7521, RFC 7523): reading one, choosing the registered keys that may have
 * signed it, verifying it with the algorithm its key is bound to, and the claim rules of this
 * issuer. No HTTP, no SQL: the caller resolves the keys (an agent's, a federated issuer's) and
 * records the jti.
 */

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
export const GRANT_JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer'

/** An agent's own assertion may reach at most this far ahead (API.md: exp ≤ now + 300 s). */
export const MAX_OWN_ASSERTION_SECONDS = 300
/** Clock skew forgiven on exp, nbf and iat, as for access tokens. */
export const CLOCK_SKEW_SECONDS = 30

/** An assertion this issuer does not accept; `reason` goes to the audit event, never to the caller. */
export class AssertionRefused extends Error {
  constructor (readonly reason: string) {
    super(`assertion refused: ${reason}`)
    this.name = 'AssertionRefused'
  }
}

/** An assertion refused, with the agent it claimed (for the audit event) when known. */
export class AssertionFailure extends Error {
  /** `unauthorizedClient`: the client is refused as such (a suspended agent; a metadata document's host without a grant): 400 unauthorized_client */
  constructor (readonly reason: string, readonly claimedAgentId: string | null, readonly unauthorizedClient = false) {
    super(`assertion refused: ${reason}`)
    this.name = 'AssertionFailure'
  }
}

export interface ReadAssertion { header: ProtectedHeaderParameters, claims: JWTPayload }

/** The header and claims of a compact JWS, unverified: only to find who claims to have signed it. */
export function readAssertion (assertion: string): ReadAssertion {
  if (!isCanonicalCompactJws(assertion)) {
    // an unsecured JWT (RFC 7519 §6) has an empty signature: named for what it is in the audit trail
    throw new AssertionRefused(headerAlg(assertion) === 'none' ? 'alg_none' : 'malformed_assertion')
  }
  try {
    return { header: decodeProtectedHeader(assertion), claims: decodeJwt(assertion) }
  } catch {
    throw new AssertionRefused('malformed_assertion')
  }
}

function headerAlg (assertion: string): unknown {
  try {
    return decodeProtectedHeader(assertion).alg
  } catch {
    return undefined
  }
}

/** The keys that may have signed an assertion with this header: by kid when it names one, else by algorithm. */
export function candidateKeys (keys: PublicKey[], header: ProtectedHeaderParameters): PublicKey[] {
  const alg = header.alg ?? ''
  const fitting = keys.filter((key) => key.algorithms.includes(alg))
  return header.kid === undefined ? fitting : fitting.filter((key) => key.kid === header.kid)
}

const keyObjects = new WeakMap<PublicKey, KeyObject>()

function keyObjectOf (key: PublicKey): KeyObject {
  let object = keyObjects.get(key)
  if (object === undefined) {
    object = createPublicKey({ key: key.jwk as JsonWebKey, format: 'jwk' })
    keyObjects.set(key, object)
  }
  return object
}

// a key nobody holds: a refusal for an unknown client costs one signature verification too
let decoyKey: KeyObject | null = null
function decoy (): KeyObject {
  decoyKey ??= generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey
  return decoyKey
}

export interface VerifyRules {
  /** the algorithms allowed at all (an issuer's list, or the agent key algorithms) */
  algorithms: readonly string[]
  /** accepted `aud` values: one must be present */
  audiences: string[]
  /** required `iss` and `sub` values, when known in advance */
  issuer?: string
  subject?: string
  /** exp may be at most this many seconds ahead of now */
  maxSecondsAhead: number
  /** exp − iat (or exp − now without iat) at most this many seconds */
  maxLifetimeSeconds?: number
  /** a jti is required (single use) */
  requireJti: boolean
}

/**
 * Verifies the assertion with the first of `keys` whose signature holds (each with its own bound
 * algorithm only), then the claim rules. With no key at all, a decoy verification keeps the cost
 * of a refusal the same. Throws AssertionRefused with the reason.
 */
export async function verifyAssertion (assertion: string, read: ReadAssertion, keys: PublicKey[], rules: VerifyRules, nowSeconds: number): Promise<{ claims: JWTPayload, key: PublicKey }> {
  const alg = read.header.alg ?? ''
  if (alg === 'none' || !rules.algorithms.includes(alg)) {
    await jwtVerify(assertion, decoy(), { algorithms: ['ES256'] }).catch(() => {})
    throw new AssertionRefused(alg === 'none' ? 'alg_none' : 'alg_not_allowed')
  }
  const candidates = candidateKeys(keys, read.header)
  if (candidates.length === 0) {
    await jwtVerify(assertion, decoy(), { algorithms: ['ES256'] }).catch(() => {})
    throw new AssertionRefused('unknown_key')
  }
  for (const key of candidates) {
    try {
      const { payload } = await jwtVerify(assertion, keyObjectOf(key), { algorithms: [alg], clockTolerance: CLOCK_SKEW_SECONDS, currentDate: new Date(nowSeconds * 1000) })
      checkClaims(payload, rules, nowSeconds)
      return { claims: payload, key }
    } catch (error) {
      const code = (error as { code?: string }).code
      if (code === 'ERR_JWT_EXPIRED') throw new AssertionRefused('assertion_expired')
      if (code === 'ERR_JWT_CLAIM_VALIDATION_FAILED') throw new AssertionRefused('assertion_not_yet_valid')
      if (error instanceof AssertionRefused) throw error
    }
  }
  throw new AssertionRefused('bad_signature')
}

function checkClaims (claims: JWTPayload, rules: VerifyRules, now: number): void {
  if (typeof claims.exp !== 'number') throw new AssertionRefused('exp_missing')
  if (claims.exp > now + rules.maxSecondsAhead + CLOCK_SKEW_SECONDS) throw new AssertionRefused('exp_too_far_ahead')
  if (typeof claims.iat === 'number' && claims.iat > now + CLOCK_SKEW_SECONDS) throw new AssertionRefused('iat_in_future')
  if (rules.maxLifetimeSeconds !== undefined && claims.exp - (typeof claims.iat === 'number' ? claims.iat : now) > rules.maxLifetimeSeconds) {
    throw new AssertionRefused('lifetime_too_long')
  }
  if (rules.issuer !== undefined && claims.iss !== rules.issuer) throw new AssertionRefused('wrong_iss')
  if (rules.subject !== undefined && claims.sub !== rules.subject) throw new AssertionRefused('wrong_sub')
  const audiences = Array.isArray(claims.aud) ? claims.aud : claims.aud === undefined ? [] : [claims.aud]
  if (!audiences.some((aud) => rules.audiences.includes(aud))) throw new AssertionRefused('wrong_aud')
  if (rules.requireJti && (typeof claims.jti !== 'string' || claims.jti.length === 0 || claims.jti.length > 256)) throw new AssertionRefused('jti_missing')
}

/** Reads a claim by name, or by JSON Pointer (RFC 6901) when the name starts with "/". */
function claimAt (claims: JWTPayload, name: string): unknown {
  if (!name.startsWith('/')) return claims[name]
  let value: unknown = claims
  for (const token of name.slice(1).split('/').map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))) {
    if (typeof value !== 'object' || value === null || !Object.hasOwn(value, token)) return undefined
    value = (value as Record<string, unknown>)[token]
  }
  return value
}

/** Whether every condition (claim = value) holds. */
export function conditionsHold (conditions: Record<string, unknown> | null | undefined, claims: JWTPayload): boolean {
  return Object.entries(conditions ?? {}).every(([name, expected]) => claimAt(claims, name) === expected)
}
