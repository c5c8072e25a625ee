/**
 * A JWS compact serialization (RFC 7515 §7.1) in its one canonical spelling: three base64url
 * segments without padding, each the exact encoding of its bytes. Decoders forgive padding (`==`)
 * and non-zero unused trailing bits, so one token would have many spellings (issue 11, defect 12):
 * a revocation keyed by spelling, a cache or a log search would see different tokens. Only the
 * canonical spelling is accepted.
 */
const COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/

export function isCanonicalCompactJws (token: string): boolean {
  if (!COMPACT.test(token)) return false
  return token.split('.').every((segment) => Buffer.from(segment, 'base64url').toString('base64url') === segment)
}
