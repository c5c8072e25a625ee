import { generateKeyPairSync } from 'node:crypto'
import type t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import type { TestApp } from '../../helper.js'

/** Shared by the agent-registry test files; not a test file itself (tap runs only *.test.ts). */

export type Tap = Parameters<Parameters<typeof t.test>[0]>[0]

export const AGENTS = '/api/v1/agents'

export const agentUrl = (agentId: string) => `${AGENTS}/${agentId}`

/** A well-formed UUID v4 that names no agent. */
export const UNKNOWN_AGENT = '6f1c2a57-9a1e-4d3b-8c55-2b9f3e0a7d41'

/** Asserts an RFC 9457 problem of the given status and code, and returns its body. */
export function assertProblem (t: Tap, res: LightMyRequestResponse, status: number, code?: string): Record<string, unknown> {
  t.equal(res.statusCode, status, `status ${status}: ${res.body.slice(0, 300)}`)
  t.match(res.headers['content-type'], /^application\/problem\+json/, 'problem+json content type')
  const body = res.json() as Record<string, unknown>
  t.type(body.type, 'string', 'problem has a type')
  t.type(body.title, 'string', 'problem has a title')
  t.equal(body.status, status, 'problem status equals the HTTP status')
  t.type(body.detail, 'string', 'problem has a detail')
  t.type(body.code, 'string', 'problem has a code')
  if (code !== undefined) t.equal(body.code, code)
  return body
}

/** Asserts a 400 VALIDATION_ERROR with `errors: [{field, message}]` naming `field` (when given). */
export function assertValidationError (t: Tap, res: LightMyRequestResponse, field?: string | RegExp): void {
  const body = assertProblem(t, res, 400, 'VALIDATION_ERROR')
  const errors = body.errors as Array<{ field: unknown, message: unknown }> | undefined
  if (!t.ok(Array.isArray(errors) && errors.length > 0, 'validation errors are listed')) return
  for (const entry of errors as Array<{ field: unknown, message: unknown }>) {
    t.type(entry.field, 'string', 'each error names a field')
    t.type(entry.message, 'string', 'each error has a message')
  }
  if (field !== undefined) {
    const fields = (errors as Array<{ field: string }>).map((entry) => entry.field)
    t.ok(fields.some((name) => typeof field === 'string' ? name === field : field.test(name)), `errors name ${String(field)}: ${fields.join(', ')}`)
  }
}

/** A 4xx that is not a server error, whatever the exact status. */
export function assertClientError (t: Tap, res: LightMyRequestResponse, label: string): void {
  t.ok(res.statusCode >= 400 && res.statusCode < 500, `${label}: 4xx, got ${res.statusCode} ${res.body.slice(0, 200)}`)
}

export interface AuditRow {
  event_id: string
  agent_id: string | null
  action: string
  outcome: string
  metadata: Record<string, unknown>
}

/** The audit rows about one agent (the target), oldest first. */
export async function auditOf (app: TestApp, agentId: string): Promise<AuditRow[]> {
  const { rows } = await app.pg.query<AuditRow>(
    'SELECT event_id, agent_id, action, outcome, metadata FROM audit_events WHERE agent_id = $1 ORDER BY created_at, event_id', [agentId])
  return rows
}

/** The audit rows written on behalf of one caller (metadata.actorId), oldest first. */
export async function auditByActor (app: TestApp, actorId: string): Promise<AuditRow[]> {
  const { rows } = await app.pg.query<AuditRow>(
    "SELECT event_id, agent_id, action, outcome, metadata FROM audit_events WHERE metadata->>'actorId' = $1 ORDER BY created_at, event_id", [actorId])
  return rows
}

/** The stored row of an agent, as the database holds it. */
export async function agentRow (app: TestApp, agentId: string): Promise<Record<string, unknown> | undefined> {
  const { rows } = await app.pg.query('SELECT * FROM agents WHERE agent_id = $1', [agentId])
  return rows[0]
}

export async function countAgentsWithEmail (app: TestApp, email: string): Promise<number> {
  const { rows } = await app.pg.query<{ count: number }>('SELECT count(*)::int AS count FROM agents WHERE lower(email) = lower($1)', [email])
  return rows[0].count
}

/** An RSA private key this app does not know. */
export function foreignKey () {
  return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
