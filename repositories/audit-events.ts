import type { Queryable } from './transaction.js'
import { decodeCursor, encodeCursor } from '../lib/cursor.js'
import { exactTimestamp } from './columns.js'
import type { AuditEvent, ListAuditQuery } from '../schemas/audit.js'

/**
 * SQL of audit events: the one INSERT every event goes through (token issuance's group commit
 * included) and the reads of the audit API. audit_events rows are only ever inserted (and deleted
 * by retention, repositories/audit-chain.ts), never updated.
 */

/** One event as it is written: the columns of audit_events, camelCase. */
export interface AuditRecord {
  eventId: string
  agentId: string | null
  action: string
  outcome: 'success' | 'failure'
  ipAddress: string | null
  userAgent: string | null
  metadata: Record<string, unknown>
}

/**
 * The one statement that writes audit events: rows come from a JSON array parameter (one
 * parameter is cheaper to send than seven arrays), as `eventsParameter` makes it. `where` lets a
 * caller keep only some of them inside a larger statement (token issuance keeps the events of the
 * issuances its quota granted, repositories/tokens.ts).
 */
export function insertEventsSql (parameter: string, where = 'true'): string {
  return `INSERT INTO audit_events (event_id, agent_id, action, outcome, ip_address, user_agent, metadata)
       SELECT e.event_id, e.agent_id, e.action, e.outcome, e.ip_address, e.user_agent, e.metadata
       FROM jsonb_to_recordset(${parameter}::jsonb) AS e (event_id uuid, agent_id uuid, action varchar, outcome varchar,
         ip_address inet, user_agent varchar, metadata jsonb)
       WHERE ${where}`
}

/** The JSON parameter of insertEventsSql. */
export function eventsParameter (events: AuditRecord[]): string {
  return JSON.stringify(events.map((event) => ({
    event_id: event.eventId,
    agent_id: event.agentId,
    action: event.action,
    outcome: event.outcome,
    ip_address: event.ipAddress,
    user_agent: event.userAgent,
    metadata: event.metadata
  })))
}

export async function insertAuditEvents (db: Queryable, events: AuditRecord[]): Promise<void> {
  if (events.length === 0) return
  // named: prepared once per connection; introspection writes an event on every call
  await db.query({ name: 'insert-events', text: insertEventsSql('$1'), values: [eventsParameter(events)] })
}

interface EventRow {
  event_id: string
  agent_id: string | null
  action: string
  outcome: 'success' | 'failure'
  ip_address: string | null
  user_agent: string | null
  metadata: Record<string, unknown>
  created_at_exact: string
}

const EVENT_COLUMNS = `event_id, agent_id, action, outcome, host(ip_address) AS ip_address, user_agent, metadata,
  ${exactTimestamp('created_at')} AS created_at_exact`

function toAuditEvent ({
  event_id: eventId, agent_id: agentId, action, outcome, ip_address: ipAddress, user_agent: userAgent, metadata, created_at_exact: timestamp
}: EventRow): AuditEvent {
  return { eventId, agentId, action, outcome, ipAddress, userAgent, metadata, timestamp }
}

export interface AuditPage { data: AuditEvent[], nextCursor: string | null }

/** True of every event; the predicate of the newest-first index over the whole trail (migration 014). */
const WHOLE_TRAIL = "created_at > '-infinity'"

/**
 * The statement behind GET /api/v1/audit: equality on whichever of agent_id, action and outcome are
 * given, a created_at range, and the keyset, newest first. Migration 007 has an index for every
 * combination whose leading columns are exactly the equalities (014 the one without any), so PostgreSQL reads the page
 * straight from it (test/repositories/audit-events.test.ts asserts the plans). Exported for that test.
 */
export function auditListStatement (query: ListAuditQuery): { text: string, values: unknown[] } {
  const conditions: string[] = []
  const values: unknown[] = []
  const bind = (value: unknown) => { values.push(value); return `$${values.length}` }
  if (query.agentId !== undefined) conditions.push(`agent_id = ${bind(query.agentId)}::uuid`)
  if (query.action !== undefined) conditions.push(`action = ${bind(query.action)}`)
  if (query.outcome !== undefined) conditions.push(`outcome = ${bind(query.outcome)}`)
  if (query.startDate !== undefined) conditions.push(`created_at >= ${bind(query.startDate)}::timestamptz`)
  if (query.endDate !== undefined) conditions.push(`created_at <= ${bind(query.endDate)}::timestamptz`)
  if (query.cursor !== undefined) {
    const after = decodeCursor(query.cursor)
    conditions.push(`(created_at, event_id) < (${bind(after.createdAt)}::timestamptz, ${bind(after.id)}::uuid)`)
  }
  // without an equality filter: the partial newest-first index (migration 014), which only such
  // listings may use; with one, the index of exactly those filters (migration 007)
  if (query.agentId === undefined && query.action === undefined && query.outcome === undefined) conditions.push(WHOLE_TRAIL)
  const where = conditions.length === 0 ? '' : `WHERE ${conditions.join(' AND ')}`
  // one row more than asked tells whether another page exists
  return {
    text: `SELECT ${EVENT_COLUMNS} FROM audit_events ${where} ORDER BY created_at DESC, event_id DESC LIMIT ${bind(query.limit + 1)}`,
    values
  }
}

export async function listAuditEvents (db: Queryable, query: ListAuditQuery): Promise<AuditPage> {
  const { text, values } = auditListStatement(query)
  const { rows } = await db.query<EventRow>(text, values)
  const page = rows.slice(0, query.limit)
  const last = page[page.length - 1]
  return {
    data: page.map(toAuditEvent),
    nextCursor: rows.length > query.limit ? encodeCursor({ createdAt: last.created_at_exact, id: last.event_id }) : null
  }
}

export async function findAuditEvent (db: Queryable, eventId: string): Promise<AuditEvent | null> {
  const { rows } = await db.query<EventRow>(`SELECT ${EVENT_COLUMNS} FROM audit_events WHERE event_id = $1`, [eventId])
  return rows.length === 0 ? null : toAuditEvent(rows[0])
}


/** A position in the export order: the last event written, by its exact instant and id. */
export interface ExportPosition { createdAt: string, eventId: string }

/**
 * The next `limit` events of an export, oldest first, from `since` (inclusive) to `until`
 * (inclusive), after `position` (keyset on created_at, event_id, as the listing's, ascending).
 */
export async function exportAuditEvents (db: Queryable, range: { since?: string, until?: string, after?: ExportPosition, limit: number }):
Promise<{ events: AuditEvent[], last: ExportPosition | null }> {
  const conditions: string[] = []
  const values: unknown[] = []
  const bind = (value: unknown) => { values.push(value); return `$${values.length}` }
  if (range.since !== undefined) conditions.push(`created_at >= ${bind(range.since)}::timestamptz`)
  if (range.until !== undefined) conditions.push(`created_at <= ${bind(range.until)}::timestamptz`)
  if (range.after !== undefined) conditions.push(`(created_at, event_id) > (${bind(range.after.createdAt)}::timestamptz, ${bind(range.after.eventId)}::uuid)`)
  conditions.push(WHOLE_TRAIL)
  const where = `WHERE ${conditions.join(' AND ')}`
  const { rows } = await db.query<EventRow>(`SELECT ${EVENT_COLUMNS} FROM audit_events ${where} ORDER BY created_at, event_id LIMIT ${bind(range.limit)}`, values)
  const last = rows[rows.length - 1]
  return { events: rows.map(toAuditEvent), last: last === undefined ? null : { createdAt: last.created_at_exact, eventId: last.event_id } }
}
