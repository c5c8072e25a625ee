import type { Queryable } from './transaction.js'
import { eventsParameter, insertEventsSql, type AuditRecord } from './audit-events.js'

/**
 * SQL of access tokens: the state a token's validity depends on, the issuance record (the
 * `token.issued` events and the monthly quota, written together) and revocations.
 */

/** The server-side state of one token, read in one indexed query: agent, credential and revocation. */
export interface TokenState {
  agentStatus: 'active' | 'suspended' | 'decommissioned'
  capabilities: string[]
  validAfterMs: number
  /** the credential named by the token's jti is revoked, or is not this agent's */
  credentialRevoked: boolean
  tokenRevoked: boolean
}

export async function findTokenState (db: Queryable, agentId: string, credentialId: string, jti: string): Promise<TokenState | null> {
  const { rows } = await db.query<{
    status: TokenState['agentStatus'], capabilities: string[], valid_after_ms: string,
    credential_status: string | null, token_revoked: boolean
  }>({
    name: 'find-token-state',
    text: `SELECT a.status, a.capabilities, (extract(epoch FROM a.tokens_valid_after) * 1000)::bigint AS valid_after_ms,
       c.status AS credential_status,
       EXISTS (SELECT 1 FROM revoked_tokens r WHERE r.jti = $3) AS token_revoked
     FROM agents a
     LEFT JOIN credentials c ON c.credential_id = $2 AND c.client_id = a.agent_id
     WHERE a.agent_id = $1`,
    values: [agentId, credentialId, jti]
  })
  if (rows.length === 0) return null
  const row = rows[0]
  return {
    agentStatus: row.status,
    capabilities: row.capabilities,
    validAfterMs: Number(row.valid_after_ms),
    credentialRevoked: row.credential_status !== 'active',
    tokenRevoked: row.token_revoked
  }
}

/**
 * Records a batch of issuances' durable writes in ONE statement (one round trip, one commit): the
 * monthly quota is incremented per agent only while it stays within `quota` (0 = no limit), and
 * only the issuances of agents whose increment succeeded get their `token.issued` event. Returns
 * the agents whose whole group was refused, so the caller can settle them one by one.
 */
export async function recordIssuances (db: Queryable, events: AuditRecord[], quota: number, month: string): Promise<Set<string>> {
  const counts = new Map<string, number>()
  // agents in one order in every batch: concurrent batches lock their quota rows without deadlocking
  for (const agentId of events.map((event) => event.agentId as string).sort()) {
    counts.set(agentId, (counts.get(agentId) ?? 0) + 1)
  }
  const { rows } = await db.query<{ agent_id: string }>({
    name: 'record-issuances',
    text: `WITH wanted (agent_id, n) AS (
       SELECT * FROM unnest($1::uuid[], $2::int[])
     ), granted AS (
       INSERT INTO token_monthly_counts AS q (agent_id, month, count)
       SELECT agent_id, $3::date, n FROM wanted WHERE $4::int = 0 OR n <= $4::int
       ON CONFLICT (agent_id, month) DO UPDATE SET count = q.count + EXCLUDED.count
       WHERE $4::int = 0 OR q.count + EXCLUDED.count <= $4::int
       RETURNING agent_id
     ), events AS (
       ${insertEventsSql('$5', 'e.agent_id IN (SELECT agent_id FROM granted)')}
     )
     SELECT agent_id FROM granted`,
    values: [[...counts.keys()], [...counts.values()], month, quota, eventsParameter(events)]
  })
  const granted = new Set(rows.map((row) => row.agent_id))
  return new Set([...counts.keys()].filter((agentId) => !granted.has(agentId)))
}

/** Locks the agent's counter for the month and returns how many tokens it may still be issued. */
export async function remainingQuota (db: Queryable, agentId: string, month: string, quota: number): Promise<number> {
  await db.query(
    `INSERT INTO token_monthly_counts (agent_id, month, count) VALUES ($1, $2, 0)
     ON CONFLICT (agent_id, month) DO NOTHING`, [agentId, month])
  const { rows } = await db.query<{ count: number }>(
    'SELECT count FROM token_monthly_counts WHERE agent_id = $1 AND month = $2 FOR UPDATE', [agentId, month])
  return Math.max(0, quota - rows[0].count)
}

export async function addToMonthlyCount (db: Queryable, agentId: string, month: string, n: number): Promise<void> {
  await db.query('UPDATE token_monthly_counts SET count = count + $3 WHERE agent_id = $1 AND month = $2', [agentId, month, n])
}

/** Records a token as revoked until it expires; false when it already was. */
export async function recordRevokedToken (db: Queryable, jti: string, agentId: string, expiresAt: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO revoked_tokens (jti, agent_id, expires_at) VALUES ($1, $2, to_timestamp($3))
     ON CONFLICT (jti) DO NOTHING`, [jti, agentId, expiresAt])
  return rowCount === 1
}

/** Deletes, in one bounded batch, revocations of tokens that have expired since (they can't be used anyway). */
export async function pruneExpiredRevocations (db: Queryable, batchSize: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM revoked_tokens WHERE jti IN (
       SELECT jti FROM revoked_tokens WHERE expires_at < now() - interval '1 hour' LIMIT $1
       FOR UPDATE SKIP LOCKED)`, [batchSize])
  return rowCount ?? 0
}
