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
