import { validationError } from './errors.js'

/**
 * Instants given by callers (RFC 3339 date-times, as the schemas' `date-time` format accepts
 * them) turned into one canonical UTC form before anything compares or stores them. JavaScript's
 * Date.parse refuses some valid spellings (a leap second `23:59:60`, an offset `+00` without
 * minutes) and PostgreSQL refuses offsets beyond ±15:59 — either way a valid-looking input became a
 * 500 or slipped past a check (issue 11, defect 9). Here every accepted spelling has one meaning
 * and everything else is a 400.
 */
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)$/
// PostgreSQL's timestamptz input accepts offsets up to ±15:59
const MAX_OFFSET_MINUTES = 15 * 60 + 59

/** Epoch milliseconds of `text`, or null when it is not an instant PostgreSQL and this API agree on. */
export function instantMs (text: string): number | null {
  const match = RFC3339.exec(text)
  if (match === null) return null
  const [, year, month, day, hour, minute, second, fraction = '', zulu, sign, offsetHours = '0', offsetMinutes = '0'] = match
  const [y, mo, d, h, mi, s] = [year, month, day, hour, minute, second].map(Number)
  if (y < 1 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 60) return null
  const date = new Date(0)
  date.setUTCFullYear(y, mo - 1, d)
  // a real calendar day: Feb 30 would have rolled into March
  if (date.getUTCDate() !== d) return null
  const offset = zulu !== undefined ? 0 : (sign === '-' ? -1 : 1) * (Number(offsetHours) * 60 + Number(offsetMinutes))
  if (Math.abs(offset) > MAX_OFFSET_MINUTES || Number(offsetMinutes) > 59) return null
  // a leap second (:60) is the first instant of the next minute, as PostgreSQL reads it
  date.setUTCHours(h, mi, s, Number(fraction.padEnd(3, '0').slice(0, 3)))
  const ms = date.getTime() - offset * 60_000
  // an offset must not carry 0001-01-01 into year 0, which PostgreSQL has no room for
  return new Date(ms).getUTCFullYear() < 1 ? null : ms
}

/** The canonical UTC text of a caller's instant; a 400 naming `field` when it has none. */
export function canonicalInstant (text: string, field: string): string {
  const ms = instantMs(text)
  if (ms === null || !Number.isFinite(ms)) {
    throw validationError(`${field.split('.').at(-1) ?? field} is not a valid instant`, [{ field, message: 'must be an RFC 3339 date-time with an offset within ±15:59' }])
  }
  return new Date(ms).toISOString()
}
