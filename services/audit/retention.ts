import type { Pool } from 'pg'
import { chainPrefix, deleteChainPrefix, lockChainAnchor } from '../../repositories/audit-chain.js'
import { inTransaction } from '../../repositories/transaction.js'
import { sealPending } from './sealer.js'

/**
 * Retention: events older than AUDIT_RETENTION_DAYS are deleted, oldest first along the chain, in
 * bounded batches (one short transaction each, so the table is never locked for long), and the
 * chain is re-anchored on the first event kept: its predecessor's hash is recorded, so what
 * remains still verifies. Deleting a prefix of the chain means an expired event waits for every
 * event sealed before it; the chain follows the order transactions wrote in, so that delay is the
 * length of a transaction, not days. Several instances may prune at once: the anchor's row lock
 * lets one work and the others return at once.
 */

const PRUNE_BATCH = 5000
const MAX_BATCHES_PER_RUN = 100
const DAY_MS = 86_400_000

export interface PruneOptions {
  batchSize?: number
  maxBatches?: number
  now?: Date
  /** after each batch that deleted events: the running total (a command's progress line) */
  onProgress?: (deleted: number) => void
}

/** Deletes one batch; null when another pruner holds the anchor. */
export async function pruneBatch (pool: Pool, cutoff: Date, batchSize: number): Promise<{ pruned: number, deleted: number } | null> {
  return await inTransaction(pool, async function prune (db) {
    const anchor = await lockChainAnchor(db)
    if (anchor === null) return null
    const prefix = await chainPrefix(db, anchor.firstIndex, batchSize, cutoff)
    let kept = 0
    // the chain is cut only after a contiguous run of expired events from its start
    while (kept < prefix.length && prefix[kept].expired && prefix[kept].chainIndex === anchor.firstIndex + kept) kept += 1
    if (kept === 0) return { pruned: 0, deleted: 0 }
    const last = prefix[kept - 1]
    const deleted = await deleteChainPrefix(db, anchor.firstIndex, last.chainIndex, last.hash)
    return { pruned: kept, deleted }
  })
}

/**
 * One retention run: seals what is ready (only sealed events can be cut off the chain), then
 * deletes expired events batch by batch. Returns the number of events deleted.
 */
export async function pruneExpiredEvents (pool: Pool, retentionDays: number, options: PruneOptions = {}): Promise<number> {
  if (retentionDays === 0) return 0
  const batchSize = options.batchSize ?? PRUNE_BATCH
  const cutoff = new Date((options.now ?? new Date()).getTime() - retentionDays * DAY_MS)
  await sealPending(pool, undefined, { waitForOthers: true })
  let deleted = 0
  for (let batch = 0; batch < (options.maxBatches ?? MAX_BATCHES_PER_RUN); batch += 1) {
    const result = await pruneBatch(pool, cutoff, batchSize)
    if (result === null) break
    deleted += result.deleted
    if (result.deleted > 0) options.onProgress?.(deleted)
    if (result.pruned < batchSize) break
  }
  return deleted
}
