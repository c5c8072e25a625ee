import { createHash } from 'node:crypto'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** True for a well-formed UUID (any version), as PostgreSQL's uuid type accepts it. */
export function isUuid (value: unknown): value is string {
  return typeof value === 'string' && UUID.test(value)
}

/** The 16 bytes of a UUID. */
export function uuidToBytes (uuid: string): Buffer {
  return Buffer.from(uuid.replace(/-/g, ''), 'hex')
}

/** The canonical (lower-case, hyphenated) UUID of 16 bytes. */
export function bytesToUuid (bytes: Buffer): string {
  const hex = bytes.toString('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`
}

/** RFC 9562 §6.6's namespace for URLs. */
export const URL_NAMESPACE = '6ba7b811-9dad-11d1-80b4-00c04fd430c8'

/** The name-based UUID (version 5, SHA-1) of `name` in `namespace` (RFC 9562 §5.5): the same name, the same UUID. */
export function uuidV5 (name: string, namespace: string = URL_NAMESPACE): string {
  const hash = createHash('sha1').update(uuidToBytes(namespace)).update(name, 'utf8').digest()
  const bytes = hash.subarray(0, 16)
  bytes[6] = (bytes[6] & 0x0f) | 0x50
  bytes[8] = (bytes[8] & 0x3f) | 0x80
  return bytesToUuid(bytes)
}
