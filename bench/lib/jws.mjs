// Compact JWS with node:crypto, for the load generator (client assertions, DPoP proofs) and the
// reference servers: one place that knows how each algorithm maps to a key type and a signature.
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto'

export const ALGORITHMS = ['RS256', 'ES256', 'EdDSA']

/** A fresh signing key pair of `alg`'s kind: RSA 2048, EC P-256 or Ed25519. */
export function keyPairFor (alg) {
  if (alg === 'RS256') return generateKeyPairSync('rsa', { modulusLength: 2048 })
  if (alg === 'ES256') return generateKeyPairSync('ec', { namedCurve: 'P-256' })
  if (alg === 'EdDSA') return generateKeyPairSync('ed25519')
  throw new Error(`unknown algorithm ${alg}`)
}

/** node:crypto's arguments for `alg`: the digest (null for Ed25519) and the key options. */
export function signArguments (alg, privateKey) {
  if (alg === 'RS256') return ['sha256', privateKey]
  // JWS wants r ‖ s, not DER (RFC 7518 §3.4)
  if (alg === 'ES256') return ['sha256', { key: privateKey, dsaEncoding: 'ieee-p1363' }]
  if (alg === 'EdDSA') return [null, privateKey]
  throw new Error(`unknown algorithm ${alg}`)
}

export const b64json = (value) => Buffer.from(JSON.stringify(value)).toString('base64url')

/** A synchronous signer: JWS compact serialisation of `payload` under `header`. */
export function jwsSigner (alg, privateKey) {
  const [digest, key] = signArguments(alg, privateKey)
  return (header, payload) => {
    const input = `${b64json(header)}.${b64json(payload)}`
    return `${input}.${sign(digest, Buffer.from(input), key).toString('base64url')}`
  }
}

/** The protected header of a compact JWS (no verification). */
export function headerOf (token) {
  return JSON.parse(Buffer.from(String(token).split('.')[0], 'base64url').toString())
}

/** The payload of a compact JWS (no verification). */
export function payloadOf (token) {
  return JSON.parse(Buffer.from(String(token).split('.')[1], 'base64url').toString())
}

/**
 * RFC 7523 client assertions for `clientId` at `audience`: ES256, a fresh jti each, 60 s.
 * `privateJwk` carries its kid (the key registered for the agent).
 */
export function assertionMaker ({ clientId, audience, privateKey, kid }) {
  const signJws = jwsSigner('ES256', privateKey)
  const header = { alg: 'ES256', kid, typ: 'JWT' }
  return () => {
    const now = Math.floor(Date.now() / 1000)
    return signJws(header, { iss: clientId, sub: clientId, aud: audience, iat: now, exp: now + 60, jti: randomUUID() })
  }
}

/**
 * RFC 9449 proofs for `method` `url`, one fresh jti per call, ES256 with the public key in the
 * header. One key for the whole load: each token is bound to it (cnf.jkt).
 */
export function dpopProofMaker ({ method, url }) {
  const { privateKey, publicKey } = keyPairFor('ES256')
  const { kty, crv, x, y } = publicKey.export({ format: 'jwk' })
  const signJws = jwsSigner('ES256', privateKey)
  const header = { typ: 'dpop+jwt', alg: 'ES256', jwk: { kty, crv, x, y } }
  return () => signJws(header, { jti: randomUUID(), htm: method, htu: url, iat: Math.floor(Date.now() / 1000) })
}
