import type { Queryable } from '../../plugins/db.js'
import type { AuditRecord } from '../audit/repository.js'

/** SQL of the OAuth service: client lookup, the issuance record, token state and revocation. */

/** What client authentication needs, from the credential the secret names and its agent. */
export interface ClientRecord {
  credentialId: string
  agentId: string
  secretHash: string | null
  credentialStatus: 'active' | 'revoked' | 'expired'
  agentStatus: 'active' | 'suspended' | 'decommissioned'
  capabilities: string[]
  validAfterMs: number
}

export async function findClientByCredential (db: Queryable, credentialId: string): Promise<ClientRecord | null> {
  const { rows } = await db.query<{
    credential_id: string, agent_id: string, secret_hash: string | null, credential_status: ClientRecord['credentialStatus'],
    agent_status: ClientRecord['agentStatus'], capabilities: string[], valid_after_ms: string
  }>({
    name: 'find-client-by-credential',
    text: `SELECT c.credential_id, a.agent_id, c.secret_hash,
       CASE WHEN c.status = 'revoked' THEN 'revoked'
            WHEN c.expires_at IS NOT NULL AND c.expires_at <= now() THEN 'expired'
            ELSE 'active' END AS credential_status,
       a.status AS agent_status, a.capabilities,
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
    agentStatus: row.agent_status,
    capabilities: row.capabilities,
    validAfterMs: Number(row.valid_after_ms)
  }
}

export async function agentExists (db: Queryable, agentId: string): Promise<boolean> {
  const { rowCount } = await db.query('SELECT 1 FROM agents WHERE agent_id = $1', [agentId])
  return rowCount === 1
}

/** The server-side state of one token, read in one indexed query: agent, token row and credential. */
export interface TokenState {
  agentStatus: 'active' | 'suspended' | 'decommissioned'
  capabilities: string[]
  validAfterMs: number
  /** false when no issuance was recorded for this jti (not one of ours, or pruned after expiry) */
  recorded: boolean
  tokenRevoked: boolean
  credentialRevoked: boolean
}

export async function findTokenState (db: Queryable, agentId: string, jti: string): Promise<TokenState | null> {
  const { rows } = await db.query<{
    status: TokenState['agentStatus'], capabilities: string[], valid_after_ms: string,
    jti: string | null, token_revoked_at: Date | null, credential_status: string | null
  }>({
    name: 'find-token-state',
    text: `SELECT a.status, a.capabilities, (extract(epoch FROM a.tokens_valid_after) * 1000)::bigint AS valid_after_ms,
       t.jti, t.revoked_at AS token_revoked_at, c.status AS credential_status
     FROM agents a
     LEFT JOIN issued_tokens t ON t.jti = $2 AND t.agent_id = a.agent_id
     LEFT JOIN credentials c ON c.credential_id = t.credential_id
     WHERE a.agent_id = $1`,
    values: [agentId, jti]
  })
  if (rows.length === 0) return null
  const row = rows[0]
  return {
    agentStatus: row.status,
    capabilities: row.capabilities,
    validAfterMs: Number(row.valid_after_ms),
    recorded: row.jti !== null,
    tokenRevoked: row.token_revoked_at !== null,
    credentialRevoked: row.credential_status === 'revoked'
  }
}

export interface Issuance {
  jti: string
  agentId: string
  credentialId: string
  scope: string
  audience: string
  issuedAt: number
  expiresAt: number
  audit: AuditRecord
}

/**
 * Records a batch of issuances in ONE statement (one round trip, one commit): the monthly quota is
 * incremented per agent only while it stays within `quota`, and only the issuances of agents whose
 * increment succeeded get their token row and their `token.issued` event. Returns the agents whose
 * whole group was refused, so the caller can settle them one by one.
 */
export async function recordIssuances (db: Queryable, batch: Issuance[], quota: number, month: string): Promise<Set<string>> {
  const counts = new Map<string, number>()
  // agents in one order in every batch: concurrent batches lock their quota rows without deadlocking
  for (const item of [...batch].sort((a, b) => a.agentId.localeCompare(b.agentId))) {
    counts.set(item.agentId, (counts.get(item.agentId) ?? 0) + 1)
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
     ), tokens AS (
       INSERT INTO issued_tokens (jti, agent_id, credential_id, scope, audience, issued_at, expires_at)
       SELECT i.jti, i.agent_id, i.credential_id, i.scope, i.audience, to_timestamp(i.iat), to_timestamp(i.exp)
       FROM unnest($5::uuid[], $6::uuid[], $7::uuid[], $8::text[], $9::text[], $10::bigint[], $11::bigint[])
         AS i (jti, agent_id, credential_id, scope, audience, iat, exp)
       WHERE i.agent_id IN (SELECT agent_id FROM granted)
     ), events AS (
       INSERT INTO audit_events (event_id, agent_id, action, outcome, ip_address, user_agent, metadata)
       SELECT e.* FROM unnest($12::uuid[], $6::uuid[], $13::varchar[], $14::varchar[], $15::inet[], $16::varchar[], $17::jsonb[])
         AS e (event_id, agent_id, action, outcome, ip_address, user_agent, metadata)
       WHERE e.agent_id IN (SELECT agent_id FROM granted)
     )
     SELECT agent_id FROM granted`,
    values: [
      [...counts.keys()], [...counts.values()], month, quota,
      batch.map((item) => item.jti), batch.map((item) => item.agentId), batch.map((item) => item.credentialId),
      batch.map((item) => item.scope), batch.map((item) => item.audience),
      batch.map((item) => item.issuedAt), batch.map((item) => item.expiresAt),
      batch.map((item) => item.audit.eventId), batch.map((item) => item.audit.action), batch.map((item) => item.audit.outcome),
      batch.map((item) => item.audit.ipAddress), batch.map((item) => item.audit.userAgent),
      batch.map((item) => JSON.stringify(item.audit.metadata))
    ]
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

export async function insertIssuedTokens (db: Queryable, items: Array<Omit<Issuance, 'audit'>>): Promise<void> {
  if (items.length === 0) return
  await db.query(
    `INSERT INTO issued_tokens (jti, agent_id, credential_id, scope, audience, issued_at, expires_at)
     SELECT jti, agent_id, credential_id, scope, audience, to_timestamp(iat), to_timestamp(exp)
     FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::bigint[], $7::bigint[])
       AS i (jti, agent_id, credential_id, scope, audience, iat, exp)`,
    [items.map((item) => item.jti), items.map((item) => item.agentId), items.map((item) => item.credentialId),
      items.map((item) => item.scope), items.map((item) => item.audience),
      items.map((item) => item.issuedAt), items.map((item) => item.expiresAt)])
}

/** Marks a token revoked; false when it was unknown or already revoked. */
export async function revokeIssuedToken (db: Queryable, jti: string): Promise<boolean> {
  const { rowCount } = await db.query('UPDATE issued_tokens SET revoked_at = now() WHERE jti = $1 AND revoked_at IS NULL', [jti])
  return rowCount === 1
}

/** Deletes, in one bounded batch, rows of tokens that expired more than a grace period ago. */
export async function pruneExpiredTokens (db: Queryable, batchSize: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM issued_tokens WHERE jti IN (
       SELECT jti FROM issued_tokens WHERE expires_at < now() - interval '1 hour' LIMIT $1
       FOR UPDATE SKIP LOCKED)`, [batchSize])
  return rowCount ?? 0
}
