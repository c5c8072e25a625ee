import { createPrivateKey, createPublicKey, sign as rsaSign, type KeyObject } from 'node:crypto'
import { promisify } from 'node:util'
import fp from 'fastify-plugin'
import { calculateJwkThumbprint, exportJWK, jwtVerify, type JWTPayload, type JWTVerifyResult } from 'jose'
import type { FastifyInstance } from 'fastify'
import { UnknownKeyError } from '../lib/errors.js'

/**
 * The signing key ring. Tokens are signed only with the current key; the current key and every
 * additional public key (the next one before a switch, the previous one until its tokens expire)
 * verify and are published in the JWKS. Each key is bound to RS256 through its kid, so a token
 * can never choose its own algorithm (no `none`, no HMAC keyed with a public key).
 */
export const SIGNING_ALG = 'RS256'
export const ACCESS_TOKEN_TYP = 'at+jwt'
/** accepted clock skew for exp/nbf/iat, in seconds */
export const CLOCK_TOLERANCE_SECONDS = 30

export interface PublicJwk { kty: string, n: string, e: string, kid: string, alg: string, use: 'sig' }

export interface KeyRing {
  readonly currentKid: string
  /** signs an RFC 9068 access token with the current key */
  sign (claims: JWTPayload): Promise<string>
  /** verifies signature, alg, kid, typ, iss, aud and exp/nbf; throws a jose error otherwise */
  verify (token: string, expect: { issuer: string, audience: string | string[] }): Promise<JWTVerifyResult>
  jwks (): { keys: PublicJwk[] }
}

// with a callback, node:crypto signs on libuv's threads, off the event loop
const signOffLoop = promisify(rsaSign)

function base64url (json: unknown): string {
  return Buffer.from(JSON.stringify(json)).toString('base64url')
}

interface VerificationKey { kid: string, key: KeyObject, jwk: PublicJwk }

async function describeKey (key: KeyObject): Promise<VerificationKey> {
  const jwk = await exportJWK(key)
  // RFC 7638 thumbprint over the required members only (e, kty, n): the same key always gets the same kid
  const kid = await calculateJwkThumbprint({ kty: jwk.kty, e: jwk.e, n: jwk.n }, 'sha256')
  return { kid, key, jwk: { kty: jwk.kty as string, n: jwk.n as string, e: jwk.e as string, kid, alg: SIGNING_ALG, use: 'sig' } }
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
  const protectedHeader = base64url({ alg: SIGNING_ALG, typ: ACCESS_TOKEN_TYP, kid: current.kid })

  return {
    currentKid: current.kid,
    // The JWS compact serialization (RFC 7515 §7.1) of the claims, with RSASSA-PKCS1-v1_5 over
    // SHA-256 (RS256). Not jose's SignJWT: it signs through WebCrypto, whose per-call conversions
    // cost ≈ 150 µs of event-loop time per token here (README, "Performance"), and the event loop
    // is what bounds the token endpoint. The claims come only from the token route; every token is
    // verified by jose (below, and in the tests against the published JWKS).
    async sign (claims) {
      const signingInput = `${protectedHeader}.${base64url(claims)}`
      const signature = await signOffLoop('sha256', Buffer.from(signingInput), privateKey)
      return `${signingInput}.${signature.toString('base64url')}`
    },
    async verify (token, expect) {
      return await jwtVerify(token, function keyForKid (header) {
        const entry = typeof header.kid === 'string' ? verification.get(header.kid) : undefined
        if (entry === undefined) throw new UnknownKeyError()
        return entry.key
      }, {
        algorithms: [SIGNING_ALG],
        typ: ACCESS_TOKEN_TYP,
        issuer: expect.issuer,
        audience: expect.audience,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        requiredClaims: ['exp', 'iat', 'jti', 'sub']
      })
    },
    jwks: () => published
  }
}

declare module 'fastify' {
  interface FastifyInstance { keys: KeyRing }
}

export default fp(async function keysPlugin (app: FastifyInstance) {
  app.decorate('keys', await createKeyRing(app.config.JWT_PRIVATE_KEY, app.config.JWT_ADDITIONAL_PUBLIC_KEYS))
}, { name: 'keys', dependencies: ['config'], fastify: '5.x' })
