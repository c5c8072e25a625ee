import type { Pool } from 'pg'
import { chainHash } from './chain.js'
import { appendSeals, awaitChainHead, hasSealableEvents, lockChainHead, nextUnsealedEvents, type Seal } from '../../repositories/audit-chain.js'
import { inTransaction } from '../../repositories/transaction.js'

/**
 * The sealer gives committed events their place in the one hash chain, after the fact, so that
 * writers (token issuance writes hundreds of events a second, from every instance) never wait for
 * each other or for the chain. Every instance runs one; the chain head's row lock lets one seal at
 * a time and the others skip (they have nothing to add: the one at work takes every event that is
 * ready). An event is ready once every transaction older than the one that wrote it has ended, so
 * the chain follows the order in which transactions began writing, and no event is ever skipped.
 */

const SEAL_BATCH = 2000

/** Seals up to `batchSize` ready events in one transaction; null when another sealer holds the chain. */
export async function sealBatch (pool: Pool, batchSize = SEAL_BATCH): Promise<number | null> {
  if (!await hasSealableEvents(pool)) return 0
  return await inTransaction(pool, async function seal (db) {
    const state = await lockChainHead(db)
    if (state === null) return null
    const events = await nextUnsealedEvents(db, state, batchSize)
    if (events.length === 0) return 0
    let previous = state.headHash
    const seals = events.map((event, offset): Seal => {
      const chainIndex = state.headIndex + offset + 1
      previous = chainHash(previous, { chainIndex: String(chainIndex), ...event.fields })
      return { chainIndex, eventId: event.fields.eventId, hash: previous, createdAt: event.fields.createdAt }
    })
    const last = events[events.length - 1]
    await appendSeals(db, seals, { txId: last.txId, createdAt: last.fields.createdAt, eventId: last.fields.eventId })
    return seals.length
  })
}

/**
 * Seals batch after batch until nothing is ready; returns how many it sealed. Another sealer at
 * work makes the periodic job return at once (it has nothing to add), but with `waitForOthers`
 * (retention, which can cut only sealed events) it waits for that sealer's transaction to end and
 * then seals what is still ready: events committed after the other sealer took its watermark.
 */
export async function sealPending (pool: Pool, batchSize = SEAL_BATCH, { waitForOthers = false } = {}): Promise<number> {
  let total = 0
  for (;;) {
    const sealed = await sealBatch(pool, batchSize)
    if (sealed === null) {
      if (!waitForOthers) return total
      await inTransaction(pool, awaitChainHead)
      continue
    }
    total += sealed
    if (sealed < batchSize) return total
  }
}
