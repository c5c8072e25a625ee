/**
 * The one reader of Authorization headers (RFC 7235 §2.1 / RFC 9110 §11.4): `<scheme> <token68>`.
 * Bearer tokens (RFC 6750 §2.1) and Basic credentials (RFC 7617) are both token68.
 */
export interface Authorization {
  /** lower-cased: `bearer`, `basic`, … */
  scheme: string
  /** the token68, or null when what follows the scheme is not one */
  credentials: string | null
}

const HEADER = /^([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)(?: +(.*))?$/
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*$/

/** Null when there is no header (or an empty one). */
export function parseAuthorization (header: string | undefined): Authorization | null {
  if (header === undefined || header === '') return null
  const match = HEADER.exec(header)
  if (match === null) return { scheme: '', credentials: null }
  const credentials = (match[2] ?? '').trimEnd()
  return { scheme: match[1].toLowerCase(), credentials: TOKEN68.test(credentials) ? credentials : null }
}

/** The Bearer token of a header; null when the header is absent, of another scheme or malformed. */
export function bearerToken (header: string | undefined): string | null {
  const authorization = parseAuthorization(header)
  return authorization?.scheme === 'bearer' ? authorization.credentials : null
}
