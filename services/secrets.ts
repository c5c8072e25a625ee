import { randomBytes, randomUUID } from 'node:crypto'
import argon2 from 'argon2'
import { bytesToUuid, uuidToBytes } from '../lib/uuid.js'

/**
 * Client secrets: `sk_live_` + base64url(credential id (16 bytes) ‖ 32 random bytes).
 * The 256 random bits are the secret; the embedded credential id lets the token endpoint find the
 * one row to check with a primary-key lookup instead of trying every credential of an agent.
 * At rest only an argon2id hash exists.
 */
export const SECRET_PREFIX = 'sk_live_'
const ID_BYTES = 16
const RANDOM_BYTES = 32
const ENCODED_LENGTH = Math.ceil((ID_BYTES + RANDOM_BYTES) * 4 / 3)
const SECRET_PATTERN = new RegExp(`^${SECRET_PREFIX}[A-Za-z0-9_-]{${ENCODED_LENGTH}}$`)

/** OWASP's minimum for argon2id (m = 19 MiB, t = 2, p = 1): ≈ 45 ms a verification here. */
export const ARGON2_OPTIONS = { type: argon2.argon2id, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const

export function generateSecret (credentialId: string): string {
  return SECRET_PREFIX + Buffer.concat([uuidToBytes(credentialId), randomBytes(RANDOM_BYTES)]).toString('base64url')
}

/** The credential a presented secret claims to belong to, or null when it isn't one of ours. */
export function credentialIdOf (secret: string): string | null {
  if (!SECRET_PATTERN.test(secret)) return null
  const bytes = Buffer.from(secret.slice(SECRET_PREFIX.length), 'base64url')
  return bytes.length === ID_BYTES + RANDOM_BYTES ? bytesToUuid(bytes.subarray(0, ID_BYTES)) : null
}

export async function hashSecret (secret: string): Promise<string> {
  return await argon2.hash(secret, ARGON2_OPTIONS)
}

/** argon2's verify compares in constant time. */
export async function verifySecret (hash: string, secret: string): Promise<boolean> {
  try {
    return await argon2.verify(hash, secret)
  } catch {
    return false
  }
}

let decoyHash: Promise<string> | undefined
/**
 * A hash of a random secret, verified against when the client or credential is unknown so that
 * "no such client" costs the same argon2 work as "wrong secret" and can't be told apart by timing.
 */
export function decoy (): Promise<string> {
  decoyHash ??= hashSecret(randomBytes(RANDOM_BYTES).toString('base64url'))
  return decoyHash
}

/** A new credential's id, its secret (to show once) and the hash to store. */
export async function newSecret (): Promise<{ credentialId: string, secret: string, secretHash: string }> {
  const credentialId = randomUUID()
  const secret = generateSecret(credentialId)
  return { credentialId, secret, secretHash: await hashSecret(secret) }
}
