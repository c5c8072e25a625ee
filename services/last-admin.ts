import { countOtherUsableHolders, lockScopeHolders } from '../repositories/agents.js'
import type { Queryable } from '../repositories/transaction.js'

/**
 * The last-admin rule (API.md): the system must keep an agent able to administer agents. Able
 * means active, holding `agents:write`, AND holding a usable credential (active, not revoked, not
 * expired): an admin that cannot obtain a token administers nothing, so counting it would let the
 * last usable admin be suspended and lock everyone out. Changes that could end the last one's
 * ability — suspension, decommissioning, dropping the scope, revoking its last usable credential —
 * ask `isLastUsableAdmin` inside their transaction. (A credential simply reaching its expiry can't
 * be refused: `bootstrap` creates a new admin then.)
 */
export const ADMIN_SCOPE = 'agents:write'

/** An active agent holding the admin scope (whether it can authenticate is a question of its credentials). */
export function holdsAdminScope (agent: { status: string, capabilities: readonly string[] }): boolean {
  return agent.status === 'active' && agent.capabilities.includes(ADMIN_SCOPE)
}

/**
 * Whether no agent other than `agentId` could still administer. Takes the holders' lock for the
 * rest of the transaction first, so that two such changes run one after the other and neither
 * counts on an admin the other is removing.
 */
export async function isLastUsableAdmin (db: Queryable, agentId: string): Promise<boolean> {
  await lockScopeHolders(db, ADMIN_SCOPE)
  return await countOtherUsableHolders(db, ADMIN_SCOPE, agentId) === 0
}
