import { createHash, createPublicKey, type JsonWebKey } from 'node:crypto'
import type { JWK } from 'jose'

/**
 * Public JSON Web Keys that someone else registers with us: an agent's own keys (private_key_jwt,
 * the JWT-bearer grant) and a federated issuer's. Each key is checked to be a usable public
 * verification key of an allowed algorithm, and its algorithm is bound to it: an assertion is
 * verified only with the algorithm its key allows (never `none`, never HMAC with a public key as
 * the secret).
 */

/**
 * What an agent may register (API.md): RS256 with a modulus of at least 2048 bits, ES256, EdDSA.
 * Ed25519 is EdDSA's fully-specified name (RFC 9864) for the one curve accepted here, which newer
 * clients (oauth4webapi) put in the header: a key registered as EdDSA verifies under either name.
 */
export const AGENT_KEY_ALGORITHMS = ['RS256', 'ES256', 'EdDSA', 'Ed25519'] as const
/** What a federated issuer may use: the asymmetric JWS algorithms platforms sign with. */
export const FEDERATION_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const
const EDDSA_NAMES = ['EdDSA', 'Ed25519']

export const MAX_AGENT_KEYS = 10
export const MAX_ISSUER_KEYS = 20
const MIN_RSA_BITS = 2048
const MAX_RSA_BITS = 8192
// members that only a private (or symmetric) key has: a JWKS that holds one is refused whole
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'] as const
const CURVE_OF_ALG: Record<string, string> = { ES256: 'P-256', ES384: 'P-384', ES512: 'P-521' }

export interface PublicKey {
  /** the key as registered (public members only) */
  jwk: JWK
  kid: string | null
  /** the algorithms this key verifies: its `alg` when it names one, else every allowed one its type fits */
  algorithms: string[]
  /** RFC 7638 SHA-256 thumbprint: the key's identity whatever its kid */
  thumbprint: string
}

/** A JWKS that can't be registered; `field` names the member at fault (e.g. `jwks.keys[1].d`). */
export class JwksProblem extends Error {
  constructor (readonly field: string, message: string) {
    super(message)
  }
}

/** Whether a key of this type (kty, crv, RSA size) can verify `alg`. */
function fits (jwk: JWK, alg: string): boolean {
  if (alg.startsWith('RS') || alg.startsWith('PS')) return jwk.kty === 'RSA'
  if (alg.startsWith('ES')) return jwk.kty === 'EC' && jwk.crv === CURVE_OF_ALG[alg]
  if (EDDSA_NAMES.includes(alg)) return jwk.kty === 'OKP' && jwk.crv === 'Ed25519'
  return false
}

function rsaBits (jwk: JWK): number {
  const modulus = Buffer.from(String(jwk.n ?? ''), 'base64url')
  const leading = modulus.findIndex((byte) => byte !== 0)
  if (leading < 0) return 0
  return (modulus.length - leading - 1) * 8 + (32 - Math.clz32(modulus[leading]))
}

function checkMembers (jwk: Record<string, unknown>, field: string): void {
  for (const member of PRIVATE_MEMBERS) {
    if (member in jwk) throw new JwksProblem(`${field}.${member}`, `"${member}" is a private key member: register the public key only`)
  }
  if (!['RSA', 'EC', 'OKP'].includes(String(jwk.kty))) throw new JwksProblem(`${field}.kty`, 'kty must be RSA, EC or OKP (no symmetric keys)')
  // jwt-svid: a SPIFFE trust bundle's JWT authorities (SPIFFE Trust Domain and Bundle §4.2.1)
  if (jwk.use !== undefined && jwk.use !== 'sig' && jwk.use !== 'jwt-svid') throw new JwksProblem(`${field}.use`, 'use must be "sig" (or a SPIFFE bundle\'s "jwt-svid")')
  if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) {
    throw new JwksProblem(`${field}.key_ops`, 'key_ops must include "verify"')
  }
  if (jwk.kid !== undefined && (typeof jwk.kid !== 'string' || jwk.kid.length === 0 || jwk.kid.length > 256)) {
    throw new JwksProblem(`${field}.kid`, 'kid must be a string of 1 to 256 characters')
  }
}

/** The algorithms a key may verify with, within `allowed`; refuses a key that fits none. */
function algorithmsOf (jwk: JWK, allowed: readonly string[], field: string): string[] {
  if (jwk.alg !== undefined) {
    if (!allowed.includes(jwk.alg)) throw new JwksProblem(`${field}.alg`, `alg must be one of ${allowed.join(', ')}`)
    if (!fits(jwk, jwk.alg)) throw new JwksProblem(`${field}.alg`, `alg ${jwk.alg} does not fit a ${jwk.kty} key${jwk.crv === undefined ? '' : ` on ${jwk.crv}`}`)
    return EDDSA_NAMES.includes(jwk.alg) ? EDDSA_NAMES.filter((name) => allowed.includes(name)) : [jwk.alg]
  }
  const algorithms = allowed.filter((alg) => fits(jwk, alg))
  if (algorithms.length === 0) {
    throw new JwksProblem(field, `a ${String(jwk.kty)} key${jwk.crv === undefined ? '' : ` on ${jwk.crv}`} fits none of ${allowed.join(', ')}`)
  }
  return algorithms
}

/**
 * RFC 7638 §3: SHA-256 over the required members in lexicographic order, no whitespace. Computed
 * here rather than with jose's (asynchronous) one, so a fetched JWKS is read synchronously.
 */
function thumbprintOf (jwk: JWK): string {
  const required = jwk.kty === 'RSA' ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
    : jwk.kty === 'EC' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }
      : { crv: jwk.crv, kty: jwk.kty, x: jwk.x }
  return createHash('sha256').update(JSON.stringify(required)).digest('base64url')
}

function readKey (value: unknown, allowed: readonly string[], field: string): PublicKey {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new JwksProblem(field, 'each key must be a JSON object (a JWK)')
  checkMembers(value as Record<string, unknown>, field)
  const jwk = value as JWK
  const algorithms = algorithmsOf(jwk, allowed, field)
  if (jwk.kty === 'RSA') {
    const bits = rsaBits(jwk)
    if (bits < MIN_RSA_BITS || bits > MAX_RSA_BITS) throw new JwksProblem(`${field}.n`, `an RSA key needs ${MIN_RSA_BITS} to ${MAX_RSA_BITS} bits; this one has ${bits}`)
  }
  try {
    // a real key of that type: a point on its curve, a well-formed modulus and exponent
    createPublicKey({ key: jwk as JsonWebKey, format: 'jwk' })
  } catch {
    throw new JwksProblem(field, 'not a valid public key of its type')
  }
  return { jwk, kid: jwk.kid ?? null, algorithms, thumbprint: thumbprintOf(jwk) }
}

/**
 * Reads a JWK Set `{keys: [...]}` of 1 to `maxKeys` public keys, each fitting one of `algorithms`,
 * with distinct kids and distinct keys. Throws JwksProblem naming the first member at fault.
 */
export function readPublicJwks (value: unknown, options: { algorithms: readonly string[], maxKeys: number, field: string }): PublicKey[] {
  const { field } = options
  const keys = typeof value === 'object' && value !== null ? (value as { keys?: unknown }).keys : undefined
  if (!Array.isArray(keys)) throw new JwksProblem(field, 'a JWK Set is an object with a "keys" array')
  if (keys.length === 0 || keys.length > options.maxKeys) throw new JwksProblem(`${field}.keys`, `a JWK Set here holds 1 to ${options.maxKeys} keys`)
  const read: PublicKey[] = []
  for (const [index, key] of keys.entries()) {
    const publicKey = readKey(key, options.algorithms, `${field}.keys[${index}]`)
    if (publicKey.kid !== null && read.some((other) => other.kid === publicKey.kid)) {
      throw new JwksProblem(`${field}.keys[${index}].kid`, `kid "${publicKey.kid}" appears twice: kids must be unique`)
    }
    if (read.some((other) => other.thumbprint === publicKey.thumbprint)) {
      throw new JwksProblem(`${field}.keys[${index}]`, 'the same key appears twice')
    }
    read.push(publicKey)
  }
  return read
}

/**
 * Reads a JWK Set fetched from elsewhere (a jwks_uri): keys that can't be used here (another
 * type, `use: enc`, too small) are skipped rather than fatal, as JWKS documents commonly mix them.
 */
export function readFetchedJwks (value: unknown, options: { algorithms: readonly string[], maxKeys: number }): PublicKey[] {
  const keys = typeof value === 'object' && value !== null ? (value as { keys?: unknown }).keys : undefined
  if (!Array.isArray(keys)) throw new JwksProblem('keys', 'the document is not a JWK Set (no "keys" array)')
  const usable: PublicKey[] = []
  for (const [index, key] of keys.slice(0, options.maxKeys * 5).entries()) {
    try {
      usable.push(readKey(key, options.algorithms, `keys[${index}]`))
    } catch (error) {
      if (!(error instanceof JwksProblem)) throw error
    }
  }
  return usable.slice(0, options.maxKeys)
}
