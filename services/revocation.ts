import { pruneExpiredRevocations, type TokenState } from '../repositories/tokens.js'
import { pruneExpiredDelegations } from '../repositories/delegations.js'
import { pruneUsedAssertions } from '../repositories/used-assertions.js'
import type { Queryable } from '../repositories/transaction.js'
import { issuedBeforeValidAfter } from '../lib/token-time.js'

/**
 * Revocation state: why a correctly signed, unexpired token is nevertheless dead now, decided from
 * its server-side state (repositories/tokens.ts reads it in one indexed query, on every request,
 * so every instance gives the same answer at once), and the pruning of revocations that can no
 * longer matter.
 */
export type RevocationReason = 'agent_suspended' | 'agent_decommissioned' | 'token_revoked' | 'credential_revoked'
  /** a delegated token whose actor is no longer allowed to act (services/delegation.ts) */
  | 'delegation_revoked'

/** Null when the token is alive. */
export function revocationReason (state: TokenState, iat: number): RevocationReason | null {
  if (state.agentStatus === 'suspended') return 'agent_suspended'
  if (state.agentStatus === 'decommissioned') return 'agent_decommissioned'
  if (issuedBeforeValidAfter(iat, state.validAfterMs)) return 'token_revoked'
  if (state.tokenRevoked) return 'token_revoked'
  if (state.credentialRevoked) return 'credential_revoked'
  return null
}

const PRUNE_BATCH_SIZE = 5000
const MAX_PRUNE_BATCHES = 20

/**
 * Deletes revocations, and the chains of delegated tokens, of tokens that expired over an hour ago,
 * and the records of used assertions that expired as long ago, in bounded batches; returns how
 * many. An expired token or assertion is refused by its `exp` before any of them is consulted, so
 * pruning changes no answer. Several instances may prune at once: SKIP LOCKED hands
 * each a different batch.
 */
export async function pruneRevocations (db: Queryable): Promise<number> {
  let deleted = 0
  for (const prune of [pruneExpiredRevocations, pruneExpiredDelegations, pruneUsedAssertions]) {
    for (let batch = 0; batch < MAX_PRUNE_BATCHES; batch += 1) {
      const pruned = await prune(db, PRUNE_BATCH_SIZE)
      deleted += pruned
      if (pruned < PRUNE_BATCH_SIZE) break
    }
  }
  return deleted
}
