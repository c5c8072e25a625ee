import type { Queryable } from '../../plugins/db.js'

/** SQL of the audit trail. Rows are only ever inserted (and pruned by retention), never updated. */

export interface AuditRecord {
  eventId: string
  agentId: string | null
  action: string
  outcome: 'success' | 'failure'
  ipAddress: string | null
  userAgent: string | null
  metadata: Record<string, unknown>
}

export async function insertAuditEvents (db: Queryable, events: AuditRecord[]): Promise<void> {
  if (events.length === 0) return
  await db.query(
    `INSERT INTO audit_events (event_id, agent_id, action, outcome, ip_address, user_agent, metadata)
     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::varchar[], $4::varchar[], $5::inet[], $6::varchar[], $7::jsonb[])`,
    [
      events.map((event) => event.eventId),
      events.map((event) => event.agentId),
      events.map((event) => event.action),
      events.map((event) => event.outcome),
      events.map((event) => event.ipAddress),
      events.map((event) => event.userAgent),
      events.map((event) => JSON.stringify(event.metadata))
    ]
  )
}
