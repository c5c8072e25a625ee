import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Queryable } from './db.js'
import { insertAuditEvents, type AuditRecord } from '../routes/audit/repository.js'
import { startSealer } from '../routes/audit/sealer.js'

/**
 * The append-only audit writer. Callers pass the transaction client of the change they record, so
 * the event commits (or rolls back) with the change itself; events with no change to go with them
 * (failed authentication, refusals) are written on their own before the response is sent. Written
 * events are sealed into the hash chain shortly after they commit (routes/audit/sealer.ts), by this
 * instance or another, never on the request's path.
 */
export type AuditAction =
  | 'token.issued' | 'token.revoked' | 'token.introspected'
  | 'agent.created' | 'agent.updated' | 'agent.suspended' | 'agent.reactivated' | 'agent.decommissioned'
  | 'credential.generated' | 'credential.rotated' | 'credential.revoked'
  | 'auth.failed' | 'access.denied'

export interface AuditEntry {
  action: AuditAction
  /** the agent the event is about (the target), null when there is none */
  agentId: string | null
  outcome?: 'success' | 'failure'
  metadata?: Record<string, unknown>
}

export interface AuditWriter {
  /** `request` is null for events without an HTTP caller (the bootstrap command, scheduled jobs) */
  record (request: FastifyRequest | null, entry: AuditEntry, db?: Queryable): Promise<void>
  recordMany (request: FastifyRequest | null, entries: AuditEntry[], db?: Queryable): Promise<void>
  /** seals every committed event that is ready into the hash chain now; resolves with how many */
  seal (): Promise<number>
  /** asks the sealer for a pass soon (events were written outside record/recordMany) */
  written (): void
}

// a pass every second at most a second after any write, and sooner after this instance's own writes.
// Not much sooner: each pass costs a handful of round trips whatever it seals, so under load a pass
// every 250 ms seals hundreds of events at a time instead of a few (measured: a 20 ms nudge made
// sealing a quarter of the CPU of token issuance).
const SEAL_INTERVAL_MS = 1000
const SEAL_NUDGE_MS = 250

// Keys that must never reach an audit row, whatever a caller passes by mistake.
const FORBIDDEN_KEY = /secret|password|token$|^token|authorization|assertion|cookie|hash/i
// Values shaped like a client secret or a JWT.
const SECRET_VALUE = /sk_live_|^eyJ[\w-]+\.[\w-]+\./

/** Removes anything that could be a credential; keeps the rest as given. */
export function scrubMetadata (value: unknown): unknown {
  if (typeof value === 'string') return SECRET_VALUE.test(value) ? '[redacted]' : value
  if (Array.isArray(value)) return value.map(scrubMetadata)
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value)
      .filter(([key]) => !FORBIDDEN_KEY.test(key))
      .map(([key, inner]) => [key, scrubMetadata(inner)]))
  }
  return value
}

const USER_AGENT_MAX = 512

export function toAuditRecord (request: FastifyRequest | null, entry: AuditEntry): AuditRecord {
  const userAgent = request?.headers['user-agent']
  const actorId = request?.principal?.agentId
  return {
    eventId: randomUUID(),
    agentId: entry.agentId,
    action: entry.action,
    outcome: entry.outcome ?? 'success',
    // request.ip already honours X-Forwarded-For only from TRUST_PROXY (Fastify trustProxy)
    ipAddress: request?.ip ?? null,
    userAgent: typeof userAgent === 'string' ? userAgent.replace(/[\u0000-\u001f\u007f]/g, '').slice(0, USER_AGENT_MAX) : null,
    metadata: scrubMetadata({ ...(actorId === undefined ? {} : { actorId }), ...entry.metadata }) as Record<string, unknown>
  }
}

declare module 'fastify' {
  interface FastifyInstance { audit: AuditWriter }
}

export default fp(async function auditPlugin (app: FastifyInstance) {
  const sealer = startSealer(app.pg.pool, {
    intervalMs: SEAL_INTERVAL_MS,
    nudgeDelayMs: SEAL_NUDGE_MS,
    onError: (error) => { app.log.warn({ err: error }, 'sealing audit events failed; will retry') }
  })
  // before the pool closes: a pass in progress finishes first
  app.addHook('onClose', async () => { await sealer.stop() })

  const writer: AuditWriter = {
    async record (request, entry, db = app.pg) {
      await insertAuditEvents(db, [toAuditRecord(request, entry)])
      sealer.nudge()
    },
    async recordMany (request, entries, db = app.pg) {
      await insertAuditEvents(db, entries.map((entry) => toAuditRecord(request, entry)))
      sealer.nudge()
    },
    seal: () => sealer.sealNow(),
    written: () => { sealer.nudge() }
  }
  app.decorate('audit', writer)
}, { name: 'audit', dependencies: ['db'], fastify: '5.x' })
