import { createPrivateKey, createPublicKey, sign as cryptoSign, type KeyObject, type SignKeyObjectInput } from 'node:crypto'
import { promisify } from 'node:util'
import fp from 'fastify-plugin'
import { calculateJwkThumbprint, errors as joseErrors, exportJWK, jwtVerify, type JWTPayload, type JWTVerifyResult } from 'jose'
import type { FastifyInstance } from 'fastify'
import { UnknownKeyError } from '../lib/errors.js'
import { algorithmOfKey, type SigningAlg } from '../lib/signing-keys.js'

/**
 * The signing key ring. Tokens are signed only with the current key, with the algorithm its type
 * implies (JWT_ALG, checked by config to fit it); the current key and every additional public key
 * (the next one before a switch, the previous one until its tokens expire — of any of the three
 * types during a change of algorithm) verify and are published in the JWKS. Each key is bound to
 * its one algorithm through its kid (RSA → RS256, EC P-256 → ES256, Ed25519 → EdDSA), so a token
 * can never choose its own algorithm (no `none`, no HMAC keyed with a public key, no RS256 header
 * on an EC kid).
 */
export const ACCESS_TOKEN_TYP = 'at+jwt'
/** accepted clock skew for exp/nbf/iat, in seconds */
export const CLOCK_TOLERANCE_SECONDS = 30

interface JwkMembers { kid: string, alg: SigningAlg, use: 'sig' }
/** A published key: the public members of its type only. */
export type PublicJwk = JwkMembers & (
  | { kty: 'RSA', n: string, e: string }
  | { kty: 'EC', crv: 'P-256', x: string, y: string }
  | { kty: 'OKP', crv: 'Ed25519', x: string })

export interface KeyRing {
  readonly currentKid: string
  /** the algorithm new tokens are signed with: the current key's */
  readonly currentAlg: SigningAlg
  /** every algorithm the ring verifies (one per key type it holds), the current one first */
  readonly algorithms: readonly SigningAlg[]
  /** signs an RFC 9068 access token with the current key */
  sign (claims: JWTPayload): Promise<string>
  /**
   * verifies signature, alg, kid, typ, iss, aud and exp/nbf; throws a jose error otherwise. The
   * result is shared with later calls for the same token: don't modify it.
   */
  verify (token: string, expect: { issuer: string, audience: string | string[] }): Promise<JWTVerifyResult>
  jwks (): { keys: PublicJwk[] }
}

// with a callback, node:crypto signs on libuv's threads, off the event loop
const signOffLoop = promisify(cryptoSign)

/**
 * How node:crypto signs each algorithm: the digest it is told (null for Ed25519, which hashes
 * inside the scheme) and, for ECDSA, the JOSE encoding of the signature (RFC 7518 §3.4: r ‖ s,
 * 64 bytes, not DER).
 */
const SIGNERS: Record<SigningAlg, { digest: 'sha256' | null, key: (key: KeyObject) => KeyObject | SignKeyObjectInput, offLoop: boolean }> = {
  // An RSA signature takes ≈ 300 µs: on libuv's threads, so the event loop serves other requests
  // meanwhile. An ES256 or Ed25519 signature takes ≈ 25 µs, less than handing it to a thread and
  // back costs (a wake-up each way): signed in place (bench/README.md, "What each change bought").
  RS256: { digest: 'sha256', key: (key) => key, offLoop: true },
  ES256: { digest: 'sha256', key: (key) => ({ key, dsaEncoding: 'ieee-p1363' }), offLoop: false },
  EdDSA: { digest: null, key: (key) => key, offLoop: false }
}

function base64url (json: unknown): string {
  return Buffer.from(JSON.stringify(json)).toString('base64url')
}

interface VerificationKey { kid: string, alg: SigningAlg, key: KeyObject, jwk: PublicJwk }

/** The public members a JWKS publishes for a key of this type (RFC 7518 §6). */
function publicMembers (jwk: Awaited<ReturnType<typeof exportJWK>>, alg: SigningAlg, kid: string): PublicJwk {
  const common: JwkMembers = { kid, alg, use: 'sig' }
  if (alg === 'RS256') return { kty: 'RSA', n: jwk.n as string, e: jwk.e as string, ...common }
  if (alg === 'ES256') return { kty: 'EC', crv: 'P-256', x: jwk.x as string, y: jwk.y as string, ...common }
  return { kty: 'OKP', crv: 'Ed25519', x: jwk.x as string, ...common }
}

async function describeKey (key: KeyObject): Promise<VerificationKey> {
  const alg = algorithmOfKey(key)
  // config refuses such keys at start; a tool handing one in gets the same refusal
  if (alg === null) throw new TypeError('a signing key must be RSA (≥ 2048 bits), EC P-256 or Ed25519')
  const jwk = await exportJWK(key)
  // RFC 7638 thumbprint over the required members of its kty only (RSA: e, kty, n; EC: crv, kty,
  // x, y; OKP: crv, kty, x): the same key always gets the same kid, on every instance
  const kid = await calculateJwkThumbprint(jwk, 'sha256')
  return { kid, alg, key, jwk: publicMembers(jwk, alg, kid) }
}

/**
 * Verified tokens, remembered until they expire. An agent presents the same access token on every
 * call for up to its lifetime, and jose verifies through WebCrypto, whose hand-off to libuv's
 * threads and back costs ≈ 150 µs of event-loop time a verification (bench/README.md). A hit is the
 * very same string — signature included — checked against the same issuer and audience, so it
 * proves no less; `exp` is checked again on every hit. Whether the token was revoked since, or its
 * agent suspended, is not a property of the string: plugins/auth.ts reads that on every request.
 * Only tokens that verified are remembered, so nobody can fill this with tokens of their own making.
 */
const VERIFIED_MAX_ENTRIES = 10_000

interface VerifiedCache {
  get (key: string, nowSeconds: number): JWTVerifyResult | undefined
  set (key: string, result: JWTVerifyResult): void
}

function verifiedCache (): VerifiedCache {
  const entries = new Map<string, JWTVerifyResult>()
  return {
    get (key, nowSeconds) {
      const hit = entries.get(key)
      if (hit === undefined) return undefined
      // jose's own rule (exp > now − tolerance): past it, verify again and let jose say "expired"
      if (typeof hit.payload.exp === 'number' && hit.payload.exp > nowSeconds - CLOCK_TOLERANCE_SECONDS) return hit
      entries.delete(key)
      return undefined
    },
    set (key, result) {
      // the oldest first: a Map iterates in insertion order
      if (entries.size >= VERIFIED_MAX_ENTRIES) entries.delete(entries.keys().next().value as string)
      entries.set(key, result)
    }
  }
}

/** Builds the ring from PEMs (already validated by config); exported for tests and tools. */
export async function createKeyRing (privatePem: string, additionalPublicPems: string[] = []): Promise<KeyRing> {
  const privateKey = createPrivateKey(privatePem)
  const current = await describeKey(createPublicKey(privateKey))
  const verification = new Map<string, VerificationKey>([[current.kid, current]])
  for (const pem of additionalPublicPems) {
    const extra = await describeKey(createPublicKey(pem))
    if (!verification.has(extra.kid)) verification.set(extra.kid, extra)
  }
  const published = { keys: [...verification.values()].map((entry) => entry.jwk) }
  const algorithms = [...new Set([...verification.values()].map((entry) => entry.alg))]
  const protectedHeader = base64url({ alg: current.alg, typ: ACCESS_TOKEN_TYP, kid: current.kid })
  const signer = SIGNERS[current.alg]
  const signingKey = signer.key(privateKey)
  const verified = verifiedCache()

  return {
    currentKid: current.kid,
    currentAlg: current.alg,
    algorithms,
    // The JWS compact serialization (RFC 7515 §7.1) of the claims, signed by node:crypto with the
    // current key's algorithm. Not jose's SignJWT: it signs through WebCrypto, whose per-call
    // conversions cost ≈ 150 µs of event-loop time per token here (README, "Performance"), and the
    // event loop is what bounds the token endpoint. The claims come only from the token route;
    // every token is verified by jose (below, and in the tests against the published JWKS).
    async sign (claims) {
      const signingInput = `${protectedHeader}.${base64url(claims)}`
      const input = Buffer.from(signingInput)
      const signature = signer.offLoop ? await signOffLoop(signer.digest, input, signingKey) : cryptoSign(signer.digest, input, signingKey)
      return `${signingInput}.${signature.toString('base64url')}`
    },
    async verify (token, expect) {
      const cacheKey = `${expect.issuer}\n${JSON.stringify(expect.audience)}\n${token}`
      const known = verified.get(cacheKey, Math.floor(Date.now() / 1000))
      if (known !== undefined) return known
      const result = await jwtVerify(token, function keyForKid (header) {
        const entry = typeof header.kid === 'string' ? verification.get(header.kid) : undefined
        if (entry === undefined) throw new UnknownKeyError()
        // the kid decides the algorithm: another one the ring accepts for another key is refused here
        if (header.alg !== entry.alg) throw new joseErrors.JOSEAlgNotAllowed('the token\'s alg is not the one its key is bound to')
        return entry.key
      }, {
        algorithms: [...algorithms],
        typ: ACCESS_TOKEN_TYP,
        issuer: expect.issuer,
        audience: expect.audience,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        requiredClaims: ['exp', 'iat', 'jti', 'sub']
      })
      verified.set(cacheKey, result)
      return result
    },
    jwks: () => published
  }
}

declare module 'fastify' {
  interface FastifyInstance { keys: KeyRing }
}

export default fp(async function keysPlugin (app: FastifyInstance) {
  const ring = await createKeyRing(app.config.JWT_PRIVATE_KEY, app.config.JWT_ADDITIONAL_PUBLIC_KEYS)
  // config has checked the key against JWT_ALG; a configuration built another way must not sign otherwise
  if (ring.currentAlg !== app.config.JWT_ALG) throw new Error(`JWT_PRIVATE_KEY signs ${ring.currentAlg}, but JWT_ALG is ${app.config.JWT_ALG}`)
  app.decorate('keys', ring)
}, { name: 'keys', dependencies: ['config'], fastify: '5.x' })
