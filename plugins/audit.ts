import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Queryable } from '../repositories/transaction.js'
import { agentExists } from '../repositories/agents.js'
import { isUuid } from '../lib/uuid.js'
import type { DenialRecord } from '../lib/errors.js'
import { recordEvents, toAuditRecord, type AuditContext, type AuditEntry } from '../services/audit/record.js'
import { insertAuditEvents, type AuditRecord } from '../repositories/audit-events.js'
import { createGroupCommit } from '../lib/group-commit.js'
import { isDependencyFailure } from '../lib/errors.js'

/**
 * The audit trail's writer for the HTTP side (`app.audit`). Callers pass the transaction client of
 * the change they record, so the event commits (or rolls back) with the change itself; events with
 * no change to go with them (failed authentication, refusals, introspection) are written before the
 * response is sent, group-committed with those of the requests of the same moment
 * (lib/group-commit.ts: one INSERT and one commit for all of them, each request answered once its
 * own events are durable). Every event takes the one path of services/audit/record.ts. Written
 * events are sealed into the hash chain shortly after they commit by the jobs plugin's sealer,
 * nudged from here, never on the request's path.
 *
 * Failures have one helper each and one metadata shape:
 *   auth.failed    {reason, method, endpoint, ...details}  (the claimed agent only when it exists)
 *   access.denied  {reason, endpoint, ...details}
 * where `endpoint` is the route pattern the request matched. A refusal a flood repeats — an address
 * past a per-IP limit, a client past its token rate or its monthly quota — goes through `limitBreached`: the first from an address is written as
 * `denied` writes it, the next ones are counted into one summary row per address and minute
 * (services/audit/floods.ts, written by the jobs plugin), so no request rate turns into as many rows.
 */
export type AuthMethod = 'bearer' | 'client_credentials' | 'private_key_jwt' | 'jwt_bearer'

export interface AuthFailure {
  /** who the caller claimed to be; unverified, so recorded only when such an agent exists */
  claimedAgentId: string | null
  reason: string
  method: AuthMethod
  details?: Record<string, unknown>
}

/** the one shape of a refusal's record, also carried by AccessDenied (lib/errors.ts) */
export type Denial = DenialRecord

export interface AuditWriter {
  /** `db`: the transaction of the change the events describe; the pool by default */
  record (request: FastifyRequest, entry: AuditEntry, db?: Queryable): Promise<void>
  recordMany (request: FastifyRequest, entries: AuditEntry[], db?: Queryable): Promise<void>
  authFailed (request: FastifyRequest, failure: AuthFailure): Promise<void>
  denied (request: FastifyRequest, denial: Denial): Promise<void>
  /**
   * a refusal a flood repeats (an address past a per-IP limit; a client, `agentId`, past its own
   * limit): written at the first from the address, counted into a summary after
   */
  limitBreached (request: FastifyRequest, breach: { reason: string, agentId?: string, details?: Record<string, unknown> }): Promise<void>
  /** writes the summaries of the refusals counted so far now (a timer does it every minute); resolves with how many rows */
  flushSummaries (): Promise<number>
  /** who caused the request's events, for writers that batch them (token issuance) */
  context (request: FastifyRequest): AuditContext
  /** seals every committed event that is ready now; resolves with how many */
  seal (): Promise<number>
  /** events were written outside record/recordMany (token issuance): seal them soon */
  written (): void
}

// Soon after this instance's own writes, but not much sooner: each pass costs a handful of round
// trips whatever it seals, so under load a pass every 250 ms seals hundreds of events at a time
// instead of a few (measured: a 20 ms nudge made sealing a quarter of token issuance's CPU).
const SEAL_NUDGE_MS = 250
// calls (each with its one or few events) per commit of events of their own
const OWN_EVENTS_MAX_BATCH = 256

/** The route pattern a request matched (never the raw URL, which the caller chose). */
function endpointOf (request: FastifyRequest): string | undefined {
  return request.routeOptions.url
}

declare module 'fastify' {
  interface FastifyInstance { audit: AuditWriter }
}

export default fp(async function auditPlugin (app: FastifyInstance) {
  const { sealer, floods, floodSummaries } = app.jobs

  function context (request: FastifyRequest): AuditContext {
    const userAgent = request.headers['user-agent']
    return {
      // request.ip honours X-Forwarded-For only from TRUST_PROXY (Fastify's trustProxy)
      ipAddress: request.ip ?? null,
      userAgent: typeof userAgent === 'string' ? userAgent : undefined,
      actorId: request.principal?.agentId
    }
  }

  // events of their own (no transaction given): each call's events are one member of the next commit
  const ownCommits = createGroupCommit<AuditRecord[], void>({
    async write (calls) {
      await insertAuditEvents(app.pg, calls.flat())
      return calls.map(() => undefined)
    },
    isDependencyFailure,
    maxBatch: OWN_EVENTS_MAX_BATCH
  })

  async function recordMany (request: FastifyRequest, entries: AuditEntry[], db?: Queryable): Promise<void> {
    if (db === undefined) {
      const eventContext = context(request)
      await ownCommits.submit(entries.map((entry) => toAuditRecord(eventContext, entry)))
    } else {
      await recordEvents(db, context(request), entries)
    }
    sealer.nudge(SEAL_NUDGE_MS)
  }

  const writer: AuditWriter = {
    record: async (request, entry, db) => { await recordMany(request, [entry], db) },
    recordMany,
    async authFailed (request, failure) {
      const claimed = failure.claimedAgentId?.toLowerCase() ?? null
      const known = isUuid(claimed) && await agentExists(app.pg, claimed)
      await recordMany(request, [{
        action: 'auth.failed',
        outcome: 'failure',
        agentId: known ? claimed : null,
        metadata: { reason: failure.reason, method: failure.method, endpoint: endpointOf(request), ...failure.details }
      }])
    },
    async denied (request, denial) {
      await recordMany(request, [{
        action: 'access.denied',
        outcome: 'failure',
        agentId: denial.agentId,
        metadata: { reason: denial.reason, endpoint: endpointOf(request), ...denial.details }
      }])
    },
    async limitBreached (request, breach) {
      const agentId = breach.agentId ?? null
      if (floods.note(request.ip ?? null, { action: 'access.denied', reason: breach.reason, agentId })) {
        await writer.denied(request, { agentId, reason: breach.reason, details: breach.details })
      }
    },
    flushSummaries: () => floodSummaries.runNow(),
    context,
    seal: () => sealer.runNow(),
    written: () => { sealer.nudge(SEAL_NUDGE_MS) }
  }
  app.decorate('audit', writer)
}, { name: 'audit', dependencies: ['db', 'jobs'], fastify: '5.x' })
