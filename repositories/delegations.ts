import type { Queryable } from './transaction.js'

/**
 * SQL of delegated (token-exchange) tokens: the chain each one depends on, written before the
 * token leaves, and read back with the current state of every link in one round trip.
 */

/** A delegated token's chain: position 0 the subject, position i ≥ 1 the actor of hop i. */
export interface DelegationChain {
  agents: string[]
  credentials: string[]
  /** when token i of the chain was issued (epoch seconds) */
  iats: number[]
  /** the tokens this one derives from, the original first */
  ancestorJtis: string[]
}

export interface ChainAgentState {
  status: 'active' | 'suspended' | 'decommissioned'
  validAfterMs: number
  capabilities: string[]
  mayAct: string[]
}

/** The chain of a delegated token and the current state of each link; null when the token has no chain. */
export interface DelegationState extends DelegationChain {
  /** by agent id; an agent missing here no longer exists */
  agentStates: Record<string, ChainAgentState>
  /** credential ids that are active and belong to the agent at their position */
  activeCredentials: string[]
  /** the token itself or one it derives from is revoked */
  tokenRevoked: boolean
}

export async function insertDelegation (db: Queryable, jti: string, chain: DelegationChain, expiresAt: number): Promise<void> {
  await db.query({
    name: 'insert-delegation',
    text: `INSERT INTO delegated_tokens (jti, chain_agents, chain_credentials, chain_iats, ancestor_jtis, expires_at)
     VALUES ($1, $2::uuid[], $3::uuid[], $4::bigint[], $5::varchar[], to_timestamp($6))`,
    values: [jti, chain.agents, chain.credentials, chain.iats, chain.ancestorJtis, expiresAt]
  })
}

export async function findDelegationState (db: Queryable, jti: string): Promise<DelegationState | null> {
  const { rows } = await db.query<{
    chain_agents: string[], chain_credentials: string[], chain_iats: string[], ancestor_jtis: string[],
    agent_states: Record<string, ChainAgentState> | null, active_credentials: string[] | null, token_revoked: boolean
  }>({
    name: 'find-delegation-state',
    // every lookup below is by primary key: the delegation, its chain's agents, credentials and revocations
    text: `SELECT d.chain_agents, d.chain_credentials, d.chain_iats, d.ancestor_jtis,
       (SELECT json_object_agg(a.agent_id, json_build_object(
           'status', a.status, 'validAfterMs', (extract(epoch FROM a.tokens_valid_after) * 1000)::bigint,
           'capabilities', a.capabilities, 'mayAct', a.may_act))
        FROM agents a WHERE a.agent_id = ANY (d.chain_agents)) AS agent_states,
       (SELECT array_agg(c.credential_id::text) FROM credentials c
        JOIN unnest(d.chain_credentials, d.chain_agents) AS link (credential_id, agent_id)
          ON link.credential_id = c.credential_id AND link.agent_id = c.client_id
        WHERE c.status = 'active') AS active_credentials,
       EXISTS (SELECT 1 FROM revoked_tokens r WHERE r.jti = ANY (d.ancestor_jtis || d.jti)) AS token_revoked
     FROM delegated_tokens d WHERE d.jti = $1`,
    values: [jti]
  })
  if (rows.length === 0) return null
  const row = rows[0]
  return {
    agents: row.chain_agents,
    credentials: row.chain_credentials,
    iats: row.chain_iats.map(Number),
    ancestorJtis: row.ancestor_jtis,
    agentStates: Object.fromEntries(Object.entries(row.agent_states ?? {}).map(([agentId, state]) => [agentId, { ...state, validAfterMs: Number(state.validAfterMs) }])),
    activeCredentials: row.active_credentials ?? [],
    tokenRevoked: row.token_revoked
  }
}

/** Deletes, in one bounded batch, chains of delegated tokens that expired over an hour ago. */
export async function pruneExpiredDelegations (db: Queryable, batchSize: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM delegated_tokens WHERE jti IN (
       SELECT jti FROM delegated_tokens WHERE expires_at < now() - interval '1 hour' LIMIT $1
       FOR UPDATE SKIP LOCKED)`, [batchSize])
  return rowCount ?? 0
}
