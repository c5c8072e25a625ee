import type { Queryable } from '../../plugins/db.js'
import type { AuditRecord } from '../audit/repository.js'

/** SQL of the OAuth service: client lookup, the issuance record, token state and revocation. */

/** What client authentication needs, from the credential the secret names and its agent. */
export interface ClientRecord {
  credentialId: string
  agentId: string
  secretHash: string | null
  credentialStatus: 'active' | 'revoked' | 'expired'
  /** epoch milliseconds, null for never: lets a remembered record expire on time */
  expiresAtMs: number | null
  agentStatus: 'active' | 'suspended' | 'decommissioned'
  capabilities: string[]
  validAfterMs: number
}

export async function findClientByCredential (db: Queryable, credentialId: string): Promise<ClientRecord | null> {
  const { rows } = await db.query<{
    credential_id: string, agent_id: string, secret_hash: string | null, credential_status: ClientRecord['credentialStatus'],
    agent_status: ClientRecord['agentStatus'], capabilities: string[], valid_after_ms: string, expires_at: Date | null
  }>({
    name: 'find-client-by-credential',
    text: `SELECT c.credential_id, a.agent_id, c.secret_hash,
       CASE WHEN c.status = 'revoked' THEN 'revoked'
            WHEN c.expires_at IS NOT NULL AND c.expires_at <= now() THEN 'expired'
            ELSE 'active' END AS credential_status,
       c.expires_at, a.status AS agent_status, a.capabilities,
       (extract(epoch FROM a.tokens_valid_after) * 1000)::bigint AS valid_after_ms
     FROM credentials c JOIN agents a ON a.agent_id = c.client_id
     WHERE c.credential_id = $1`,
    values: [credentialId]
  })
  if (rows.length === 0) return null
  const row = rows[0]
  return {
    credentialId: row.credential_id,
    agentId: row.agent_id,
    secretHash: row.secret_hash,
    credentialStatus: row.credential_status,
    expiresAtMs: row.expires_at?.getTime() ?? null,
    agentStatus: row.agent_status,
    capabilities: row.capabilities,
    validAfterMs: Number(row.valid_after_ms)
  }
}

export async function agentExists (db: Queryable, agentId: string): Promise<boolean> {
  const { rowCount } = await db.query('SELECT 1 FROM agents WHERE agent_id = $1', [agentId])
  return rowCount === 1
}

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
       INSERT INTO audit_events (event_id, agent_id, action, outcome, ip_address, user_agent, metadata)
       SELECT e.event_id, e.agent_id, e.action, e.outcome, e.ip_address, e.user_agent, e.metadata
       FROM jsonb_to_recordset($5::jsonb) AS e (event_id uuid, agent_id uuid, action varchar, outcome varchar,
         ip_address inet, user_agent varchar, metadata jsonb)
       WHERE e.agent_id IN (SELECT agent_id FROM granted)
     )
     SELECT agent_id FROM granted`,
    values: [[...counts.keys()], [...counts.values()], month, quota, auditRows(events)]
  })
  const granted = new Set(rows.map((row) => row.agent_id))
  return new Set([...counts.keys()].filter((agentId) => !granted.has(agentId)))
}

/** Audit records as one JSON document: a single parameter is cheaper to send than seven arrays. */
function auditRows (events: AuditRecord[]): string {
  return JSON.stringify(events.map((event) => ({
    event_id: event.eventId,
    agent_id: event.agentId,
    action: event.action,
    outcome: event.outcome,
    ip_address: event.ipAddress,
    user_agent: event.userAgent,
    metadata: event.metadata
  })))
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
