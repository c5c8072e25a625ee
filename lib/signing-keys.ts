import { generateKeyPair, type KeyObject } from 'node:crypto'
import { promisify } from 'node:util'

/**
 * The algorithms this issuer signs its own access tokens with (JWT_ALG), and the one key type each
 * needs. The type of a key decides its algorithm, never a token's header: an RSA key signs and
 * verifies RS256 only, an EC P-256 key ES256 only, an Ed25519 key EdDSA only. Client keys (an
 * agent's, a DPoP proof's, a federated issuer's) are another matter: lib/public-jwk.ts.
 */
export const SIGNING_ALGORITHMS = ['RS256', 'ES256', 'EdDSA'] as const
export type SigningAlg = typeof SIGNING_ALGORITHMS[number]
/** API.md: RS256 unless the operator chooses otherwise */
export const DEFAULT_SIGNING_ALG: SigningAlg = 'RS256'

const MIN_RSA_BITS = 2048
// node:crypto's name of P-256
const P256 = 'prime256v1'

/** What JWT_ALG needs of a key, as a configuration error says it. */
export const KEY_REQUIRED_BY: Record<SigningAlg, string> = {
  RS256: `an RSA key of at least ${MIN_RSA_BITS} bits`,
  ES256: 'an EC key on P-256',
  EdDSA: 'an Ed25519 key'
}

/** The one algorithm a key of this type signs and verifies with here; null for any other key. */
export function algorithmOfKey (key: KeyObject): SigningAlg | null {
  const details = key.asymmetricKeyDetails ?? {}
  switch (key.asymmetricKeyType) {
    case 'rsa': return (details.modulusLength ?? 0) >= MIN_RSA_BITS ? 'RS256' : null
    case 'ec': return details.namedCurve === P256 ? 'ES256' : null
    case 'ed25519': return 'EdDSA'
    default: return null
  }
}

/** A key's type in words, for a configuration error ("an RSA key of 1024 bits"); never its value. */
export function describeKeyType (key: KeyObject): string {
  const details = key.asymmetricKeyDetails ?? {}
  switch (key.asymmetricKeyType) {
    case 'rsa': return `an RSA key of ${details.modulusLength ?? 0} bits`
    case 'ec': return `an EC key on ${details.namedCurve === P256 ? 'P-256' : String(details.namedCurve)}`
    case 'ed25519': return 'an Ed25519 key'
    default: return `a ${String(key.asymmetricKeyType)} key`
  }
}

export interface PemPair { privateKey: string, publicKey: string }

const generatePair = promisify(generateKeyPair)

/** A fresh signing pair for `alg` as the configuration reads it: PKCS#8 and SPKI PEMs. */
export async function generateSigningPair (alg: SigningAlg): Promise<PemPair> {
  const { privateKey, publicKey } = alg === 'RS256'
    ? await generatePair('rsa', { modulusLength: MIN_RSA_BITS })
    : alg === 'ES256'
      ? await generatePair('ec', { namedCurve: 'P-256' })
      : await generatePair('ed25519')
  return {
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString()
  }
}
