import type { Pool } from 'pg'
import { recordIssuances, remainingQuota, type IssuanceRecord } from '../repositories/tokens.js'
import { inTransaction, type TransactionClient } from '../repositories/transaction.js'
import { isDependencyFailure } from '../lib/errors.js'
import { createGroupCommit } from '../lib/group-commit.js'

/**
 * Token issuance's durable writes, group-committed (lib/group-commit.ts). Each issuance has writes to
 * make before its token may leave the server — its `token.issued` event and its place in the
 * monthly quota — and requests that arrive while a commit is in flight go together in the next one.
 *
 * The quota is decided inside the same statement under PostgreSQL's row lock, so parallel
 * requests on several instances can never push an agent past TOKEN_MONTHLY_QUOTA.
 */

const MAX_BATCH = 256

/**
 * `issued`: the `token.issued` event is durable, the token may leave; `over_quota`: the agent's
 * monthly quota is exhausted; `stale`: the client changed after it authenticated (suspended,
 * revoked, rotated): no token; `narrowed`: the agent's capabilities no longer cover the token's
 * scopes (narrowed after it authenticated): no token; `replayed`: the JWT assertion that
 * authenticated the client was already used (its durable record says so): no token.
 */
export type IssuanceOutcome = 'issued' | 'over_quota' | 'stale' | 'narrowed' | 'replayed'

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
function staleOutcome (record: IssuanceRecord, { stale, narrowed, replayed }: { stale: Set<string>, narrowed: Set<string>, replayed: Set<string> }): 'stale' | 'narrowed' | 'replayed' | null {
  const eventId = record.event.eventId
  if (replayed.has(eventId)) return 'replayed'
  return !stale.has(eventId) ? null : narrowed.has(eventId) ? 'narrowed' : 'stale'
}

export function createIssuanceLog ({ pool, quota, onWritten }: IssuanceLogOptions): IssuanceLog {
  /** An agent whose whole group did not fit gets what is left of its quota, in arrival order. */
  async function settleOverQuota (group: IssuanceRecord[], month: string, outcomes: Map<IssuanceRecord, IssuanceOutcome>): Promise<void> {
    const agentId = group[0].event.agentId as string
    const { fitting, outcome } = await inTransaction(pool, async function grantRemainder (db: TransactionClient) {
      const fitting = group.slice(0, await remainingQuota(db, agentId, month, quota))
      // within what the locked counter has left: no limit for this statement, the basis still re-checked
      return { fitting: fitting.length, outcome: await recordIssuances(db, fitting, 0, month) }
    })
    onWritten()
    group.forEach((record, index) => { outcomes.set(record, index >= fitting ? 'over_quota' : staleOutcome(record, outcome) ?? 'issued') })
  }

  async function writeBatch (batch: IssuanceRecord[]): Promise<IssuanceOutcome[]> {
    const month = currentMonth()
    const outcome = await recordIssuances(pool, batch, quota, month)
    const { overQuota, stale } = outcome
    onWritten()
    const outcomes = new Map<IssuanceRecord, IssuanceOutcome>()
    for (const record of batch) {
      const refused = staleOutcome(record, outcome)
      if (refused !== null) outcomes.set(record, refused)
      else if (!overQuota.has(record.event.agentId as string)) outcomes.set(record, 'issued')
    }
    for (const agentId of overQuota) {
      await settleOverQuota(batch.filter((record) => record.event.agentId === agentId && !stale.has(record.event.eventId)), month, outcomes)
    }
    return batch.map((record) => outcomes.get(record) as IssuanceOutcome)
  }

  const commits = createGroupCommit({ write: writeBatch, isDependencyFailure, maxBatch: MAX_BATCH })
  return { record: (issuance) => commits.submit(issuance) }
}
