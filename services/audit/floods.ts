import type { Queryable } from '../../repositories/transaction.js'
import { insertAuditEvents } from '../../repositories/audit-events.js'
import { toAuditRecord, type AuditAction } from './record.js'

/**
 * Refusals that a flood repeats (an address past a per-IP limit, a client past its token rate or
 * its monthly quota) recorded without one row per request, so that the audit trail can't be used
 * to fill the disk. The first refusal of a kind (action and reason) from an address — or, for a
 * client's own limit, from that client wherever it asks from — is written in full at once, as any
 * refusal is; the ones after it are only counted here, and `writeFloodSummaries` (scheduled by
 * plugins/jobs.ts once a minute, and once more when the process stops) writes one summary row per
 * address (or client) and kind with the count in `metadata.suppressed`, then forgets them: the next
 * refusal from that address is again written in full. A flood thus costs at most two rows per
 * address (or client), kind and minute on each instance, whatever its rate.
 *
 * The ledger is per instance and bounded: past MAX_ADDRESSES addresses, refusals from new ones are
 * counted together in one summary without an address (`metadata.addresses: "many"`), so a flood from
 * very many addresses costs neither unbounded memory nor a row per address beyond that.
 */
export interface FloodKind {
  action: AuditAction
  reason: string
  /** the agent the refusals are about (a client past its own limit); none for an address's limit */
  agentId?: string | null
}

export interface FloodSummary extends FloodKind {
  /** null for the summary of the addresses beyond the ledger's bound, and for a client's refusals from several addresses */
  ipAddress: string | null
  suppressed: number
  firstAt: number
  lastAt: number
}

export interface FloodLedger {
  /** Counts one refusal; true when it is the first of its kind from the address since the last summary: write it in full. */
  note (ipAddress: string | null, kind: FloodKind, now?: number): boolean
  /** the summaries due (refusals counted after a first one), emptying the ledger */
  drain (): FloodSummary[]
  /** puts summaries back (their write failed), to be written with the next ones */
  restore (summaries: FloodSummary[]): void
  readonly size: number
}

interface Tally { ipAddress: string | null, kind: FloodKind, suppressed: number, firstAt: number, lastAt: number }

const MAX_ADDRESSES = 10_000
const OVERFLOW = '*'
// summaries per INSERT: one JSON parameter each, so only the statement's size is bounded
const WRITE_BATCH = 1000

export function createFloodLedger (maxAddresses = MAX_ADDRESSES): FloodLedger {
  const tallies = new Map<string, Tally>()
  const keyOf = (subject: string, kind: FloodKind) => `${subject}\u0000${kind.action}\u0000${kind.reason}`
  // a client's own limit is the client's whichever address it asks from: one tally per agent
  const keyFor = (ipAddress: string | null, kind: FloodKind) =>
    kind.agentId != null ? keyOf(`agent:${kind.agentId}`, kind) : keyOf(ipAddress ?? OVERFLOW, kind)

  function count (key: string, ipAddress: string | null, kind: FloodKind, suppressed: number, firstAt: number, lastAt: number): void {
    const tally = tallies.get(key)
    if (tally === undefined) {
      tallies.set(key, { ipAddress, kind, suppressed, firstAt, lastAt })
      return
    }
    // refusals of one client from several addresses: the summary names none of them
    if (tally.ipAddress !== ipAddress) tally.ipAddress = null
    tally.suppressed += suppressed
    tally.firstAt = Math.min(tally.firstAt, firstAt)
    tally.lastAt = Math.max(tally.lastAt, lastAt)
  }

  return {
    note (ipAddress, kind, now = Date.now()) {
      const key = keyFor(ipAddress, kind)
      const tally = tallies.get(key)
      if (tally !== undefined) {
        count(key, ipAddress, kind, 1, now, now)
        return false
      }
      if (tallies.size >= maxAddresses) {
        const { action, reason } = kind
        count(keyOf(OVERFLOW, kind), null, { action, reason }, 1, now, now)
        return false
      }
      // the first one: written in full by the caller; only later ones are counted
      tallies.set(key, { ipAddress, kind, suppressed: 0, firstAt: now, lastAt: now })
      return true
    },
    drain () {
      const due = [...tallies.values()]
        .filter((tally) => tally.suppressed > 0)
        .map((tally): FloodSummary => ({ ...tally.kind, ipAddress: tally.ipAddress, suppressed: tally.suppressed, firstAt: tally.firstAt, lastAt: tally.lastAt }))
      tallies.clear()
      return due
    },
    restore (summaries) {
      for (const summary of summaries) {
        const kind = { action: summary.action, reason: summary.reason, agentId: summary.agentId ?? null }
        count(keyFor(summary.ipAddress, kind), summary.ipAddress, kind, summary.suppressed, summary.firstAt, summary.lastAt)
      }
    },
    get size () { return tallies.size }
  }
}

/** Writes the ledger's due summaries (one row per address and kind); resolves with how many. */
export async function writeFloodSummaries (db: Queryable, ledger: FloodLedger): Promise<number> {
  const due = ledger.drain()
  let written = 0
  try {
    for (let start = 0; start < due.length; start += WRITE_BATCH) {
      await insertAuditEvents(db, due.slice(start, start + WRITE_BATCH).map((summary) => toAuditRecord(
        { ipAddress: summary.ipAddress, userAgent: undefined, actorId: undefined },
        {
          action: summary.action,
          outcome: 'failure',
          agentId: summary.agentId ?? null,
          metadata: {
            reason: summary.reason,
            ...(summary.agentId == null ? {} : { actorId: summary.agentId }),
            summary: true,
            suppressed: summary.suppressed,
            firstAt: new Date(summary.firstAt).toISOString(),
            lastAt: new Date(summary.lastAt).toISOString(),
            ...(summary.ipAddress === null ? { addresses: 'many' } : {})
          }
        })))
      written = Math.min(due.length, start + WRITE_BATCH)
    }
  } catch (error) {
    // kept for the next run rather than lost; a batch already written is not written twice
    ledger.restore(due.slice(written))
    throw error
  }
  return due.length
}
