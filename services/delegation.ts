import type { DelegationState } from '../repositories/delegations.js'
import type { RevocationReason } from './revocation.js'
import { issuedBeforeValidAfter } from '../lib/token-time.js'

/**
 * Delegation chains (RFC 8693 token exchange): the `act` claim as a list of actors, the claim of
 * one more hop, and why a delegated token is dead now — it dies with any link of its chain.
 */

/** Deeper than any chain DELEGATION_MAX_DEPTH allows (at most 16): what validation reads at most. */
export const MAX_CHAIN_LENGTH = 32

/** RFC 8693 §4.1: `{sub, act?}`, the outermost `act` being the most recent actor. */
export interface ActClaim { sub: string, act?: ActClaim }

/**
 * The actors of a token, the first hop first ([] for a token that was not exchanged); null when
 * `act` is not a chain this issuer writes (a string `sub` at every level, nothing deeper than `limit`).
 */
export function actorsOf (act: unknown, limit: number): string[] | null {
  const outermostFirst: string[] = []
  let current = act
  while (current !== undefined) {
    if (outermostFirst.length >= limit || current === null || typeof current !== 'object') return null
    const { sub, act: inner } = current as { sub?: unknown, act?: unknown }
    if (typeof sub !== 'string') return null
    outermostFirst.push(sub)
    current = inner
  }
  return outermostFirst.reverse()
}

/** The `act` claim of a token issued to `actor` from a token whose own `act` was `previous`. */
export function nestAct (actor: string, previous: ActClaim | undefined): ActClaim {
  return previous === undefined ? { sub: actor } : { sub: actor, act: previous }
}

/**
 * Why a delegated token is dead now, or null: any agent of the chain suspended, decommissioned or
 * gone, or its token of the chain issued before its "valid after" instant; any hop's credential
 * revoked; the token or one it derives from revoked; an actor no longer in the `mayAct` of the
 * subject nor of the previous actor.
 */
export function chainRevocationReason (state: DelegationState): RevocationReason | null {
  for (const [position, agentId] of state.agents.entries()) {
    const agent = state.agentStates[agentId]
    if (agent === undefined) return 'agent_decommissioned'
    if (agent.status === 'suspended') return 'agent_suspended'
    if (agent.status === 'decommissioned') return 'agent_decommissioned'
    if (issuedBeforeValidAfter(state.iats[position], agent.validAfterMs)) return 'token_revoked'
  }
  if (state.tokenRevoked) return 'token_revoked'
  if (state.credentials.some((credentialId) => !state.activeCredentials.includes(credentialId))) return 'credential_revoked'
  const subject = state.agentStates[state.agents[0]]
  for (let hop = 1; hop < state.agents.length; hop += 1) {
    const actor = state.agents[hop]
    const previous = state.agentStates[state.agents[hop - 1]]
    if (!subject.mayAct.includes(actor) && !previous.mayAct.includes(actor)) return 'delegation_revoked'
  }
  return null
}

/** A delegated token's effective scope: its scope narrowed to the current capabilities of every agent of its chain. */
export function chainScopes (granted: string[], state: DelegationState): string[] {
  return granted.filter((scope) => state.agents.every((agentId) => state.agentStates[agentId]?.capabilities.includes(scope) === true))
}
