import type { Pool } from 'pg'
import { recordIssuances, remainingQuota, type IssuanceRecord } from '../repositories/tokens.js'
import { inTransaction, type TransactionClient } from '../repositories/transaction.js'
import { isDependencyFailure } from '../lib/errors.js'

/**
 * Group commit for token issuance. Each issuance has durable writes to make before its token may
 * leave the server — its `token.issued` event and its place in the monthly quota — and a commit
 * costs milliseconds. Requests that arrive while a commit is in flight go together in the next
 * one (one statement, one commit), so the cost is shared and no token is answered before its
 * writes are durable: nothing is lost when the process dies.
 *
 * The quota is decided inside the same statement under PostgreSQL's row lock, so parallel
 * requests on several instances can never push an agent past TOKEN_MONTHLY_QUOTA.
 */

const MAX_BATCH = 256
// One commit in flight at a time: the requests that arrive meanwhile all go in the next one. Measured
// with 10 connections (bench/): 1, 2, 3, 4 and 6 commits in flight gave 4.3, 2.6, 1.8, 1.5 and 1.2
// issuances per commit, and throughput fell with every step, since each commit costs PostgreSQL
// CPU that the signatures need (README, "Performance").
const MAX_IN_FLIGHT = 1

/**
 * `issued`: the `token.issued` event is durable, the token may leave; `over_quota`: the agent's
 * monthly quota is exhausted; `stale`: the client changed after it authenticated (suspended,
 * revoked, rotated): no token; `narrowed`: the agent's capabilities no longer cover the token's
 * scopes (narrowed after it authenticated): no token.
 */
export type IssuanceOutcome = 'issued' | 'over_quota' | 'stale' | 'narrowed'

interface Waiting { record: IssuanceRecord, settle: (outcome: IssuanceOutcome) => void, fail: (error: unknown) => void }

export interface IssuanceLog {
  record (issuance: IssuanceRecord): Promise<IssuanceOutcome>
}

/** The first day of the current UTC month, as the `month` column stores it. */
export function currentMonth (now = new Date()): string {
  return `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, '0')}-01`
}

/** Seconds until the next UTC month begins: the Retry-After of a quota refusal. */
export function secondsUntilNextMonth (now = new Date()): number {
  const next = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)
  return Math.max(1, Math.ceil((next - now.getTime()) / 1000))
}

export interface IssuanceLogOptions {
  pool: Pool
  /** TOKEN_MONTHLY_QUOTA; 0 = no limit */
  quota: number
  /** events were committed: the audit sealer may take them */
  onWritten (): void
}

/** Why the write refused a member whose client changed, or null when it did not. */
function staleOutcome (waiting: Waiting, stale: Set<string>, narrowed: Set<string>): 'stale' | 'narrowed' | null {
  const eventId = waiting.record.event.eventId
  return !stale.has(eventId) ? null : narrowed.has(eventId) ? 'narrowed' : 'stale'
}

export function createIssuanceLog ({ pool, quota, onWritten }: IssuanceLogOptions): IssuanceLog {
  const queue: Waiting[] = []
  let inFlight = 0

  /** An agent whose whole group did not fit gets what is left of its quota, in arrival order. */
  async function settleOverQuota (group: Waiting[], month: string): Promise<void> {
    const agentId = group[0].record.event.agentId as string
    const { fitting, stale, narrowed } = await inTransaction(pool, async function grantRemainder (db: TransactionClient) {
      const fitting = group.slice(0, await remainingQuota(db, agentId, month, quota))
      // within what the locked counter has left: no limit for this statement, the basis still re-checked
      const outcome = await recordIssuances(db, fitting.map((waiting) => waiting.record), 0, month)
      return { fitting: fitting.length, stale: outcome.stale, narrowed: outcome.narrowed }
    })
    onWritten()
    group.forEach((waiting, index) => waiting.settle(index >= fitting ? 'over_quota' : staleOutcome(waiting, stale, narrowed) ?? 'issued'))
  }

  async function flushBatch (batch: Waiting[]): Promise<void> {
    const month = currentMonth()
    const { overQuota, stale, narrowed } = await recordIssuances(pool, batch.map((waiting) => waiting.record), quota, month)
    onWritten()
    for (const waiting of batch) {
      const refused = staleOutcome(waiting, stale, narrowed)
      if (refused !== null) waiting.settle(refused)
      else if (!overQuota.has(waiting.record.event.agentId as string)) waiting.settle('issued')
    }
    for (const agentId of overQuota) {
      await settleOverQuota(batch.filter((waiting) => waiting.record.event.agentId === agentId && !stale.has(waiting.record.event.eventId)), month)
    }
  }

  /**
   * A batch that failed for something other than an unreachable database (a value PostgreSQL
   * refused) is retried member by member, so only the member at fault fails: no request's input
   * may fail another's issuance (issue 11, defect 2).
   */
  async function flushIsolating (batch: Waiting[]): Promise<void> {
    try {
      await flushBatch(batch)
    } catch (error) {
      if (batch.length === 1 || isDependencyFailure(error)) throw error
      for (const waiting of batch) await flushBatch([waiting]).catch((single: unknown) => { waiting.fail(single) })
    }
  }

  function pump (): void {
    while (inFlight < MAX_IN_FLIGHT && queue.length > 0) {
      const batch = queue.splice(0, MAX_BATCH)
      inFlight += 1
      flushIsolating(batch)
        .catch((error: unknown) => { batch.forEach((waiting) => waiting.fail(error)) })
        .finally(() => {
          inFlight -= 1
          pump()
        })
    }
  }

  return {
    record (issuance) {
      return new Promise<IssuanceOutcome>((resolve, reject) => {
        queue.push({ record: issuance, settle: resolve, fail: reject })
        pump()
      })
    }
  }
}
