import { randomUUID } from 'node:crypto'
import { insertAuditEvents, type AuditRecord } from '../../repositories/audit-events.js'
import type { Queryable } from '../../repositories/transaction.js'

/**
 * The one path of every audit event: an entry (what happened, to which agent) and its context (who
 * caused it, from where) become a row here, scrubbed of anything that could be a credential, and
 * reach PostgreSQL through the one INSERT of repositories/audit-events.ts — the HTTP API's events
 * (plugins/audit.ts), token issuance's group commit (services/issuance-log.ts) and the bootstrap
 * command's alike.
 */
export type AuditAction =
  | 'token.issued' | 'token.exchanged' | 'token.revoked' | 'token.introspected'
  | 'agent.created' | 'agent.updated' | 'agent.suspended' | 'agent.reactivated' | 'agent.decommissioned'
  | 'agent.keys_updated'
  | 'credential.generated' | 'credential.rotated' | 'credential.revoked'
  | 'federation.issuer_created' | 'federation.issuer_updated' | 'federation.issuer_deleted'
  | 'auth.failed' | 'access.denied'

export interface AuditEntry {
  action: AuditAction
  /** the agent the event is about (the target), null when there is none */
  agentId: string | null
  outcome?: 'success' | 'failure'
  metadata?: Record<string, unknown>
}

/** Who caused an event and from where; null for events without an HTTP caller (commands, jobs). */
export interface AuditContext {
  /** the client address as the app determined it (X-Forwarded-For only from TRUST_PROXY) */
  ipAddress: string | null
  userAgent: string | undefined
  /** the authenticated caller, recorded as metadata.actorId */
  actorId: string | undefined
}

// Keys that must never reach an audit row, whatever a caller passes by mistake.
const FORBIDDEN_KEY = /secret|password|token$|^token|authorization|assertion|cookie|hash/i
// Values shaped like a client secret or a JWT.
const SECRET_VALUE = /sk_live_|^eyJ[\w-]+\.[\w-]+\./

/** Removes anything that could be a credential; keeps the rest as given. */
export function scrubMetadata (value: unknown): unknown {
  // a lone surrogate would make PostgreSQL refuse the whole jsonb parameter, and with it a batch
  if (typeof value === 'string') return SECRET_VALUE.test(value) ? '[redacted]' : value.toWellFormed()
  if (Array.isArray(value)) return value.map(scrubMetadata)
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value)
      .filter(([key]) => !FORBIDDEN_KEY.test(key))
      .map(([key, inner]) => [key, scrubMetadata(inner)]))
  }
  return value
}

const USER_AGENT_MAX = 512

export function toAuditRecord (context: AuditContext | null, entry: AuditEntry): AuditRecord {
  const userAgent = context?.userAgent
  const actorId = context?.actorId
  return {
    eventId: randomUUID(),
    agentId: entry.agentId,
    action: entry.action,
    outcome: entry.outcome ?? 'success',
    ipAddress: context?.ipAddress ?? null,
    userAgent: typeof userAgent === 'string' ? userAgent.replace(/[\u0000-\u001f\u007f]/g, '').slice(0, USER_AGENT_MAX) : null,
    metadata: scrubMetadata({ ...(actorId === undefined ? {} : { actorId }), ...entry.metadata }) as Record<string, unknown>
  }
}

/** Writes events on `db`: the transaction of the change they describe, or the pool for events of their own. */
export async function recordEvents (db: Queryable, context: AuditContext | null, entries: AuditEntry[]): Promise<void> {
  await insertAuditEvents(db, entries.map((entry) => toAuditRecord(context, entry)))
}
