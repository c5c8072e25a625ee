import { Type, type Static, type TSchema, type TUnsafe } from 'typebox'
import { PROBLEM_CODES, problemType } from '../lib/errors.js'

/** Building blocks shared by every area's schemas. */

/**
 * A reference to a named schema (one with an `$id`, registered once with app.addSchema: see
 * schemas/components.ts). Validation and serialization resolve it like the schema itself; the
 * OpenAPI document shows it as `#/components/schemas/<$id>`, so a generated client gets a named
 * type. The TypeScript type is the schema's own.
 */
export function ref<T extends TSchema> (schema: T): TUnsafe<Static<T>> {
  const id = (schema as { $id?: unknown }).$id
  if (typeof id !== 'string') throw new Error('ref() takes a schema that has an $id')
  return Type.Unsafe<Static<T>>({ $ref: id })
}

/** Values the examples of the document share, so that they tell one consistent story. */
export const EXAMPLE = {
  agentId: '3f8e2a4c-9b1d-4e6f-8a2b-7c5d1e9f0a3b',
  credentialId: 'b71c0e52-6d3a-4f8b-9e21-5a4c3d2b1f60',
  eventId: 'e2a9c7d1-4b3f-4a6e-b8d2-1f0c9e7a5b34',
  issuerId: '5c0d8e3a-7f21-4b69-9a4e-d13b6f2c8e07',
  createdAt: '2026-11-29T09:30:00.000Z',
  updatedAt: '2026-11-29T09:45:12.000Z',
  clientSecret: 'sk_live_s3Y2xuZ2N5dHdxcXhqZm5hbGt0c2Rmb2l1cXdlcnR5'
} as const

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

export const FieldError = Type.Object({
  field: Type.String({ description: 'where: body.<member>, querystring.<name> or params.<name>' }),
  message: Type.String()
})

/** RFC 9457 problem details, as every management error is rendered by plugins/errors.ts */
export const Problem = Type.Object({
  type: Type.String({ description: 'a URN naming the code' }),
  title: Type.String({ description: 'the reason phrase of the status' }),
  status: Type.Integer({ description: 'the HTTP status' }),
  detail: Type.String({ description: 'what went wrong, for a human' }),
  code: Type.Enum([...PROBLEM_CODES], { description: 'stable, for programs: each operation lists the codes it can answer per status' }),
  errors: Type.Optional(Type.Array(FieldError, { description: 'VALIDATION_ERROR: one entry per offending field' }))
}, {
  $id: 'Problem',
  title: 'Problem',
  description: 'RFC 9457 problem details (application/problem+json)',
  examples: [{
    type: problemType('VALIDATION_ERROR'),
    title: 'Bad Request',
    status: 400,
    detail: 'body.email: must match format "email"',
    code: 'VALIDATION_ERROR',
    errors: [{ field: 'body.email', message: 'must match format "email"' }]
  }]
})

export const NoContent = Type.Null({ description: 'no content' })
