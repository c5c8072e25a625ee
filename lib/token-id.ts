import { randomFillSync } from 'node:crypto'
import { bytesToUuid, uuidToBytes } from './uuid.js'

/**
 * Access-token ids (`jti`): base64url(credential id ‖ 128 random bits). Unique like a UUID, and
 * they say which credential obtained the token, so checking "is that credential revoked?" is a
 * primary-key read at validation instead of a row written for every token issued. (The audit
 * event of each issuance records the same, server-side.)
 */
const ID_BYTES = 16
const RANDOM_BYTES = 16
const TOKEN_ID = /^[A-Za-z0-9_-]{43}$/

// randomBytes(16) for every token is a system call (≈ 10 µs here). Like crypto.randomUUID, draw
// from a buffer of CSPRNG output refilled 4 KiB at a time; each byte is handed out once.
const POOL_BYTES = 4096
const pool = Buffer.alloc(POOL_BYTES)
let poolOffset = POOL_BYTES

function randomBits (): Buffer {
  if (poolOffset + RANDOM_BYTES > POOL_BYTES) {
    randomFillSync(pool)
    poolOffset = 0
  }
  poolOffset += RANDOM_BYTES
  return pool.subarray(poolOffset - RANDOM_BYTES, poolOffset)
}

export function newTokenId (credentialId: string): string {
  return Buffer.concat([uuidToBytes(credentialId), randomBits()]).toString('base64url')
}

/** The credential a token id names, or null when the id is not one of ours. */
export function credentialOfTokenId (jti: string): string | null {
  if (!TOKEN_ID.test(jti)) return null
  const bytes = Buffer.from(jti, 'base64url')
  return bytes.length === ID_BYTES + RANDOM_BYTES ? bytesToUuid(bytes.subarray(0, ID_BYTES)) : null
}
