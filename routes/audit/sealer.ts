import type { Pool } from 'pg'
import { chainHash } from './chain.js'
import { appendSeals, hasSealableEvents, inTransaction, lockChainHead, nextUnsealedEvents, type Seal } from './repository.js'

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

/** Seals batch after batch until nothing is ready (or another sealer is at work); returns how many it sealed. */
export async function sealPending (pool: Pool, batchSize = SEAL_BATCH): Promise<number> {
  let total = 0
  for (;;) {
    const sealed = await sealBatch(pool, batchSize)
    if (sealed === null) return total
    total += sealed
    if (sealed < batchSize) return total
  }
}

export interface Sealer {
  /** asks for a pass soon: called after events were written */
  nudge (): void
  /** a pass now, after any one in progress; resolves with how many events it sealed */
  sealNow (): Promise<number>
  stop (): Promise<void>
}

export interface SealerOptions {
  intervalMs: number
  nudgeDelayMs: number
  onError (error: unknown): void
}

/** Runs the sealer on an interval and soon after each nudge, one pass at a time in this process. */
export function startSealer (pool: Pool, options: SealerOptions): Sealer {
  let running: Promise<number> | null = null
  let again = false
  let stopped = false
  let nudged: NodeJS.Timeout | null = null

  function pass (): Promise<number> {
    if (running !== null) {
      again = true
      return running
    }
    running = sealPending(pool)
      .catch((error: unknown) => { options.onError(error); return 0 })
      .finally(() => {
        running = null
        if (again && !stopped) {
          again = false
          void pass()
        }
      })
    return running
  }

  const timer = setInterval(() => { if (!stopped) void pass() }, options.intervalMs)
  timer.unref()

  return {
    nudge () {
      if (stopped || nudged !== null) return
      nudged = setTimeout(() => { nudged = null; if (!stopped) void pass() }, options.nudgeDelayMs)
      nudged.unref()
    },
    async sealNow () {
      if (running !== null) await running
      return await pass()
    },
    async stop () {
      stopped = true
      clearInterval(timer)
      if (nudged !== null) clearTimeout(nudged)
      if (running !== null) await running
    }
  }
}
