import { Type } from 'typebox'

/** Building blocks shared by every area's schemas. */

/**
 * printable text: no NUL or other control characters, which PostgreSQL and log pipelines choke on,
 * and no invisible formatting — zero-width characters and bidirectional overrides make two labels
 * that look the same differ, or one read backwards (issue 11, defect 12)
 */
export const SafeText = (minLength: number, maxLength: number, options: Record<string, unknown> = {}) =>
  Type.String({ minLength, maxLength, pattern: '^[^\\u0000-\\u001f\\u007f\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u2064\\u2066-\\u2069\\ufeff]*$', ...options })

export const Uuid = Type.String({ format: 'uuid', maxLength: 36, description: 'UUID' })

export const Timestamp = Type.String({ format: 'date-time', description: 'ISO 8601 instant, UTC' })

/** A scope / capability: `resource:action` */
export const Scope = Type.String({
  pattern: '^[a-z][a-z0-9_-]{0,63}:[a-z*][a-z0-9_.*-]{0,63}$',
  maxLength: 129,
  description: 'resource:action'
})

export const Cursor = Type.String({ pattern: '^[A-Za-z0-9_-]{1,512}$', description: 'opaque cursor from a previous page' })

export const FieldError = Type.Object({ field: Type.String(), message: Type.String() })

/** RFC 9457 problem details, as every management error is rendered by plugins/errors.ts */
export const Problem = Type.Object({
  type: Type.String(),
  title: Type.String(),
  status: Type.Integer(),
  detail: Type.String(),
  code: Type.String(),
  errors: Type.Optional(Type.Array(FieldError))
}, { title: 'Problem', description: 'RFC 9457 problem details (application/problem+json)' })

/**
 * The error responses of an authenticated management route. 413 (body over 64 KiB) and 415 (not
 * JSON) come from Fastify's body parsing, on any route that reads a body (POST, PATCH, DELETE; a
 * GET's is ignored, one shared list all the same): declared so that the document lists every status
 * a client can get (issue 11 resilience suite, test/resilience/fuzz.test.ts).
 */
export const ManagementErrors = {
  400: Problem,
  401: Problem,
  403: Problem,
  404: Problem,
  413: Problem,
  415: Problem,
  429: Problem,
  503: Problem
} as const

export const NoContent = Type.Null({ description: 'no content' })
