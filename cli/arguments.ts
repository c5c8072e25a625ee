import { InvalidArgumentError } from 'commander'

/**
 * Argument parsers for commander options: a malformed value is a usage error (exit 2) with the
 * reason, before anything runs.
 */

export function positiveInteger (value: string): number {
  if (!/^[1-9]\d{0,8}$/.test(value)) throw new InvalidArgumentError('a positive integer is required')
  return Number(value)
}

export function nonNegativeInteger (value: string): number {
  if (!/^(0|[1-9]\d{0,8})$/.test(value)) throw new InvalidArgumentError('a non-negative integer is required')
  return Number(value)
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

export function uuid (value: string): string {
  if (!UUID.test(value)) throw new InvalidArgumentError('a UUID is required')
  return value.toLowerCase()
}

/** An instant with a time zone (RFC 3339), as the API's date filters take it; returned as given. */
export function instant (value: string): string {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/i.test(value) || Number.isNaN(Date.parse(value))) {
    throw new InvalidArgumentError('an ISO 8601 instant with a time zone is required, e.g. 2026-01-31T00:00:00Z')
  }
  return value
}

export function email (value: string): string {
  if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(value) || value.length > 254) throw new InvalidArgumentError('an email address is required')
  return value
}

/** A comma- or space-separated list. */
export function list (value: string): string[] {
  return value.split(/[\s,]+/).filter(Boolean)
}
