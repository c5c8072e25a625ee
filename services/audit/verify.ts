import type { Pool } from 'pg'
import type { AuditVerification } from '../../schemas/audit.js'
import { chainHash } from './chain.js'
import { chainRangeOf, readChainState, sealedSegment, sealHashAt } from '../../repositories/audit-chain.js'
import { inTransaction } from '../../repositories/transaction.js'

/**
 * Recomputes the hash chain over the sealed events of a time range (default: the whole retained
 * chain) and says where it first breaks: an event whose fields no longer give its hash, a seal
 * whose event is gone, a gap in the chain indexes (events and seals deleted), or a head that does
 * not match the last event. It reads in chunks, in one REPEATABLE READ snapshot, so pruning or
 * sealing running meanwhile can't make it see half a change. Events not sealed yet are not checked.
 */

const CHUNK = 2000

export interface VerifyRange { startDate?: string, endDate?: string }

function broken (eventId: string | null, checked: number): AuditVerification {
  return { intact: false, checked, firstBrokenEventId: eventId }
}

/** `onProgress` hears the running count after each chunk (a command's progress line). */
export async function verifyChain (pool: Pool, range: VerifyRange, chunk = CHUNK, onProgress?: (checked: number) => void): Promise<AuditVerification> {
  return await inTransaction(pool, async function verify (db) {
    const state = await readChainState(db)
    const whole = range.startDate === undefined && range.endDate === undefined
    const bounds = whole ? { from: state.firstIndex, to: state.headIndex } : await chainRangeOf(db, range.startDate, range.endDate)
    if (bounds === null) return { intact: true, checked: 0, firstBrokenEventId: null }

    let previous = bounds.from === state.firstIndex ? state.prevHash : await sealHashAt(db, bounds.from - 1)
    let expected = bounds.from
    let checked = 0
    while (expected <= bounds.to) {
      const seals = await sealedSegment(db, expected, bounds.to, chunk)
      if (seals.length === 0) break
      for (const seal of seals) {
        // a gap (seals deleted before this one), a vanished event, or a missing predecessor
        if (seal.chainIndex !== expected || seal.event === null || previous === null) return broken(seal.sealedEventId, checked)
        if (!chainHash(previous, seal.event).equals(seal.hash)) return broken(seal.sealedEventId, checked)
        previous = seal.hash
        checked += 1
        expected += 1
      }
      onProgress?.(checked)
    }
    // the head must be the last event: deleting the newest events (and their seals) shows here
    if (whole && (expected <= bounds.to || previous === null || !previous.equals(state.headHash))) {
      return broken(state.headEventId, checked)
    }
    return { intact: true, checked, firstBrokenEventId: null }
  }, 'ISOLATION LEVEL REPEATABLE READ READ ONLY')
}
