import { validationError } from './errors.js'
import { isUuid } from './uuid.js'

/**
 * Opaque keyset cursors: the (created_at, id) of the last row of a page. created_at travels as
 * PostgreSQL's own microsecond text so that no two rows collapse onto one JavaScript millisecond.
 */
export interface Keyset { createdAt: string, id: string }

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$/

/** A timestamp PostgreSQL accepts: a real calendar instant (no month 13, no Feb 30) after year 0. */
function isRealInstant (text: string): boolean {
  const ms = Date.parse(text)
  return Number.isFinite(ms) && !text.startsWith('0000') && new Date(ms).toISOString().slice(0, 19) === text.slice(0, 19)
}

export function encodeCursor (keyset: Keyset): string {
  return Buffer.from(JSON.stringify([keyset.createdAt, keyset.id])).toString('base64url')
}

export function decodeCursor (cursor: string): Keyset {
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'))
    if (Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'string' &&
      TIMESTAMP.test(value[0]) && isRealInstant(value[0]) && isUuid(value[1])) {
      return { createdAt: value[0], id: value[1] }
    }
  } catch {
    // fall through to the same answer as any other malformed cursor
  }
  throw validationError('cursor is invalid', [{ field: 'querystring.cursor', message: 'is not a cursor returned by this API' }])
}
