import { createHash, createHmac, createPublicKey, timingSafeEqual, type JsonWebKey } from 'node:crypto'
import { decodeProtectedHeader, jwtVerify, type JWTPayload } from 'jose'
import { isCanonicalCompactJws } from '../lib/jws.js'
import { JwksProblem, readPublicJwks, type PublicKey } from '../lib/public-jwk.js'
import { DPOP_ALGORITHMS } from '../lib/protected-resource.js'

/**
 * DPoP proofs (RFC 9449 §4.3): the checks a server makes of a `DPoP` header before it binds a
 * token to the proof's key (token endpoint) or accepts a bound token (resource requests). No HTTP,
 * no storage: the caller gives the method and the URL built from ISSUER_URL (never the Host
 * header), the access token for `ath`, and the nonce source; it claims the returned jti once.
 */

// asymmetric algorithms only (§4.3 step 5): never `none`, never a MAC; one list with the metadata's
export { DPOP_ALGORITHMS }

/** How old a proof may be (its `iat`), and how far in the future a client's clock may run. */
export const PROOF_MAX_AGE_SECONDS = 60
export const PROOF_CLOCK_SKEW_SECONDS = 30
const NONCE_WINDOW_SECONDS = 300

/** A proof refused; `useNonce` when the fix is to retry with the server's nonce (error use_dpop_nonce). */
export class DpopProofError extends Error {
  constructor (readonly reason: string, readonly useNonce = false) {
    super(`DPoP proof refused: ${reason}`)
    this.name = 'DpopProofError'
  }
}

export interface NonceSource {
  /** the nonce to hand out now (DPoP-Nonce) */
  current (): string
  isValid (nonce: string): boolean
}

/**
 * Server nonces (§8) without shared state: an HMAC of the current 5-minute slot, under a key every
 * instance derives from the same secret, so a nonce one instance gave is accepted by all; the
 * current and the previous slot are valid.
 */
export function createNonceSource (secret: string, now: () => number = Date.now): NonceSource {
  const key = createHash('sha256').update('agentidp dpop nonce\n').update(secret).digest()
  const slotOf = (ms: number) => Math.floor(ms / 1000 / NONCE_WINDOW_SECONDS)
  const nonceFor = (slot: number) => {
    const prefix = Buffer.alloc(8)
    prefix.writeBigUInt64BE(BigInt(slot))
    return Buffer.concat([prefix, createHmac('sha256', key).update(prefix).digest().subarray(0, 16)]).toString('base64url')
  }
  return {
    current: () => nonceFor(slotOf(now())),
    isValid (nonce) {
      const slot = slotOf(now())
      const given = Buffer.from(nonce)
      return [slot, slot - 1].some((candidate) => {
        const expected = Buffer.from(nonceFor(candidate))
        return expected.length === given.length && timingSafeEqual(expected, given)
      })
    }
  }
}

export interface ProofCheck {
  /** the request's method */
  method: string
  /** the request's URL as ISSUER_URL builds it, without query and fragment */
  url: string
  /** the access token presented with the proof (resource requests): checked against `ath` */
  accessToken?: string
  /** when given and `required`, the proof must carry a nonce this source accepts */
  nonce?: { source: NonceSource, required: boolean }
  nowSeconds?: number
}

export interface VerifiedProof {
  /** RFC 7638 thumbprint of the proof's key: the token's cnf.jkt */
  jkt: string
  jti: string
  iat: number
}

/** `ath`: base64url(SHA-256(access token)) (§4.2). */
export function accessTokenHash (token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}

/** The URL a proof's htu must name: scheme, host and path, without query or fragment (§4.3 step 9). */
export function normalisedUrl (value: string): string | null {
  try {
    const url = new URL(value)
    return `${url.protocol}//${url.host.toLowerCase()}${url.pathname}`
  } catch {
    return null
  }
}

function headerOf (proof: string): Record<string, unknown> {
  if (!isCanonicalCompactJws(proof)) throw new DpopProofError('malformed_proof')
  try {
    return decodeProtectedHeader(proof) as Record<string, unknown>
  } catch {
    throw new DpopProofError('malformed_proof')
  }
}

/** The header's `jwk`: a public key (no private member, RSA ≥ 2048 bits) that fits `alg` (§4.3 steps 5 and 7). */
function publicKeyOf (header: Record<string, unknown>, alg: string): PublicKey {
  const jwk = header.jwk
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw new DpopProofError('jwk_missing')
  try {
    return readPublicJwks({ keys: [jwk] }, { algorithms: [alg], maxKeys: 1, field: 'jwk' })[0]
  } catch (error) {
    if (!(error instanceof JwksProblem)) throw error
    throw new DpopProofError(/\.(d|p|q|dp|dq|qi|oth|k)$/.test(error.field) ? 'jwk_private' : 'jwk_unusable')
  }
}

function checkClaims (claims: JWTPayload, check: ProofCheck, now: number): void {
  if (typeof claims.jti !== 'string' || claims.jti.length === 0 || claims.jti.length > 256) throw new DpopProofError('jti_missing')
  if (claims.htm !== check.method) throw new DpopProofError('htm_mismatch')
  if (typeof claims.htu !== 'string' || normalisedUrl(claims.htu) !== normalisedUrl(check.url)) throw new DpopProofError('htu_mismatch')
  if (typeof claims.iat !== 'number') throw new DpopProofError('iat_missing')
  if (claims.iat < now - PROOF_MAX_AGE_SECONDS || claims.iat > now + PROOF_CLOCK_SKEW_SECONDS) throw new DpopProofError('iat_out_of_window')
  if (check.accessToken !== undefined && claims.ath !== accessTokenHash(check.accessToken)) throw new DpopProofError('ath_mismatch')
  if (check.nonce?.required === true) {
    if (typeof claims.nonce !== 'string') throw new DpopProofError('nonce_missing', true)
    if (!check.nonce.source.isValid(claims.nonce)) throw new DpopProofError('nonce_stale', true)
  }
}

/** Verifies a DPoP proof (§4.3); throws DpopProofError with the reason. */
export async function verifyDpopProof (proof: string, check: ProofCheck): Promise<VerifiedProof> {
  const header = headerOf(proof)
  if (header.typ !== 'dpop+jwt') throw new DpopProofError('wrong_typ')
  const alg = typeof header.alg === 'string' ? header.alg : ''
  if (!(DPOP_ALGORITHMS as readonly string[]).includes(alg)) throw new DpopProofError('alg_not_allowed')
  const key = publicKeyOf(header, alg)
  let claims: JWTPayload
  try {
    claims = (await jwtVerify(proof, createPublicKey({ key: key.jwk as JsonWebKey, format: 'jwk' }), { algorithms: [alg], typ: 'dpop+jwt' })).payload
  } catch {
    throw new DpopProofError('bad_signature')
  }
  const now = check.nowSeconds ?? Math.floor(Date.now() / 1000)
  checkClaims(claims, check, now)
  return { jkt: key.thumbprint, jti: claims.jti as string, iat: claims.iat as number }
}
