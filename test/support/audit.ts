import { randomUUID } from 'node:crypto'
import type { TestApp } from '../helper.js'

/** Shared by the audit test files; not a test file itself (tap runs only *.test.ts). */

export const AUDIT = '/api/v1/audit'

/** Events of the table that have no seal yet. */
export async function unsealedCount (app: TestApp): Promise<number> {
  const { rows } = await app.pg.query<{ count: number }>(
    'SELECT count(*)::int AS count FROM audit_events e WHERE NOT EXISTS (SELECT 1 FROM audit_seals s WHERE s.event_id = e.event_id)')
  return rows[0].count
}

/**
 * Seals until every committed event is in the chain. An event becomes sealable once every older
 * transaction in the cluster has ended, and other test files write concurrently: retry. The
 * deadline only turns a hang into a named failure (a busy machine can hold a migration open for seconds).
 */
export async function sealAll (app: TestApp, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    await app.audit.seal()
    if (await unsealedCount(app) === 0) return
    if (Date.now() > deadline) throw new Error('audit events stayed unsealed')
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/**
 * Waits until the given events are ready to seal: every transaction in the cluster older than the
 * one that wrote them has ended. Other test files' transactions (in other databases, but xids are
 * cluster-wide) can hold that back for seconds; once reached it stays so.
 */
export async function awaitSealable (app: TestApp, eventIds: string[], timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const { rows } = await app.pg.query<{ ready: boolean }>(
      'SELECT bool_and(tx_id < pg_snapshot_xmin(pg_current_snapshot())) AS ready FROM audit_events WHERE event_id = ANY($1::uuid[])', [eventIds])
    if (rows[0].ready) return
    if (Date.now() > deadline) throw new Error('the seeded audit events did not become ready to seal')
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

export interface SeedEvent {
  agentId?: string | null
  action?: string
  outcome?: 'success' | 'failure'
  createdAt?: string
  metadata?: Record<string, unknown>
}

/** Inserts events directly (one transaction, in the order given), as the writers would. Returns their ids. */
export async function seedEvents (app: TestApp, events: SeedEvent[]): Promise<string[]> {
  const ids = events.map(() => randomUUID())
  await app.pg.query(
    `INSERT INTO audit_events (event_id, agent_id, action, outcome, ip_address, user_agent, metadata, created_at)
     SELECT id, agent, act, outc, '192.0.2.1', 'seed/1.0', meta, coalesce(at, now())
     FROM unnest($1::uuid[], $2::uuid[], $3::varchar[], $4::varchar[], $5::jsonb[], $6::timestamptz[]) AS s (id, agent, act, outc, meta, at)`,
    [
      ids,
      events.map((event) => event.agentId ?? null),
      events.map((event) => event.action ?? 'agent.updated'),
      events.map((event) => event.outcome ?? 'success'),
      events.map((event) => JSON.stringify(event.metadata ?? {})),
      events.map((event) => event.createdAt ?? null)
    ])
  return ids
}

export const daysAgo = (days: number, now = Date.now()) => new Date(now - days * 86_400_000).toISOString()
