import { createHash, randomUUID } from 'node:crypto'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose'
import type { LightMyRequestResponse } from 'fastify'
import { ISSUER, type TestApp } from '../helper.js'
import { oauthPost, TOKEN } from '../routes/oauth/support.js'

/**
 * JWT assertions built the way a client library builds them (jose): an agent's key pairs, its
 * private_key_jwt client assertions, and the token requests that carry them.
 */
export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer'

export interface SigningKey { alg: string, kid: string, privateKey: CryptoKey, publicJwk: JWK }

export async function signingKey (alg: 'RS256' | 'ES256' | 'EdDSA' | 'PS256' | 'ES384' = 'ES256', kid = `k-${randomUUID().slice(0, 8)}`): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'EdDSA' ? { crv: 'Ed25519' } : {}) })
  return { alg, kid, privateKey, publicJwk: { ...await exportJWK(publicKey), kid, alg, use: 'sig' } }
}

/** A signed JWT: header {alg, kid, typ?}, the claims as given (undefined members left out). */
export async function signJwt (key: SigningKey, claims: JWTPayload, header: Record<string, unknown> = {}): Promise<string> {
  const defined = Object.fromEntries(Object.entries(claims).filter(([, value]) => value !== undefined))
  return await new SignJWT(defined).setProtectedHeader({ alg: key.alg, kid: key.kid, ...header }).sign(key.privateKey)
}

/** An agent's own assertion (RFC 7523 §3): iss = sub = agentId, aud = the issuer, exp in 60 s, a fresh jti. */
export async function ownAssertion (agentId: string, key: SigningKey, overrides: JWTPayload = {}, header: Record<string, unknown> = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return await signJwt(key, { iss: agentId, sub: agentId, aud: ISSUER, iat: now, exp: now + 60, jti: randomUUID(), ...overrides }, header)
}

/** POST /api/v1/token with a client assertion (private_key_jwt). */
export async function tokenWithAssertion (app: TestApp, assertion: string, fields: Record<string, string | undefined> = {}): Promise<LightMyRequestResponse> {
  return await oauthPost(app, TOKEN, {
    fields: { grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: assertion, ...fields }
  })
}

/** POST /api/v1/token with the jwt-bearer grant. */
export async function tokenByGrant (app: TestApp, assertion: string, fields: Record<string, string | undefined> = {}): Promise<LightMyRequestResponse> {
  return await oauthPost(app, TOKEN, { fields: { grant_type: JWT_BEARER, assertion, ...fields } })
}

/** PUT an agent's keys. */
export async function putKeys (app: TestApp, headers: Record<string, string>, agentId: string, body: unknown): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'PUT', url: `/api/v1/agents/${agentId}/jwks`, headers: { ...headers, 'content-type': 'application/json' }, payload: JSON.stringify(body) })
}

/** A DPoP proof (RFC 9449 §4.2) signed by `key`, its public JWK in the header; `overrides` change claims, `header` the header. */
export async function dpopProof (key: SigningKey, claims: { htm: string, htu: string } & JWTPayload, header: Record<string, unknown> = {}): Promise<string> {
  const { kid: _kid, alg: _alg, use: _use, ...jwk } = key.publicJwk
  const defined = Object.fromEntries(Object.entries({ jti: randomUUID(), iat: Math.floor(Date.now() / 1000), ...claims }).filter(([, value]) => value !== undefined))
  return await new SignJWT(defined).setProtectedHeader({ typ: 'dpop+jwt', alg: key.alg, jwk, ...header }).sign(key.privateKey)
}

/** ath (RFC 9449 §4.2): base64url(SHA-256(access token)). */
export function ath (token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}
