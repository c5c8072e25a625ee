import type { Queryable } from './transaction.js'
import { eventsParameter, insertEventsSql, type AuditRecord } from './audit-events.js'
import { secretBindingSql } from './credentials.js'

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
 * What the issuance was granted on: the credential that authenticated the client, the stored
 * hash its secret was verified against, the agent's "valid after" instant as it was read then, and
 * the scopes the token grants (within the capabilities read then). The write refuses the issuance
 * if any of it changed since, or if the agent's capabilities no longer cover those scopes
 * (issue 11, defect 3).
 */
export interface IssuanceBasis {
  credentialId: string
  secretHash: string
  validAfterMs: number
  scopes: string[]
  /** the JWT assertion that authenticated the client (its key in used_assertions), recorded as used with the issuance */
  assertion?: { key: string, expiresAt: number }
}

export interface IssuanceRecord { event: AuditRecord, basis: IssuanceBasis }

export interface IssuanceOutcome {
  /** agents whose whole group did not fit in the monthly quota: the caller settles them one by one */
  overQuota: Set<string>
  /** events whose client changed after it authenticated (suspended, decommissioned, credential revoked, expired or rotated, capabilities narrowed): no token */
  stale: Set<string>
  /** of the stale events, those whose client is unchanged but for capabilities that no longer cover the token's scopes */
  narrowed: Set<string>
  /** events whose assertion was already used (a replay Redis did not see): no token, no event */
  replayed: Set<string>
}

/**
 * Records a batch of issuances' durable writes in ONE statement (one round trip, one commit).
 * First each issuance's basis is re-checked against the rows as they are now, under a share lock
 * on the agent and the credential: a suspension, revocation, rotation or narrowing of capabilities
 * committed before this statement is seen, and one in progress waits for it (their FOR UPDATE
 * conflicts; the checks are then evaluated on the rows as that change left them), so no token
 * leaves after such a change commits. Then the monthly quota is incremented per agent only while
 * it stays within `quota` (0 = no limit), in agent order (concurrent batches never deadlock), and
 * only the fresh issuances of agents whose increment succeeded get their `token.issued` event.
 */
export async function recordIssuances (db: Queryable, records: IssuanceRecord[], quota: number, month: string): Promise<IssuanceOutcome> {
  const { rows } = await db.query<{ granted_agent: string | null, stale_event: string | null, narrowed: boolean | null, replayed: boolean }>({
    name: 'record-issuances',
    text: `WITH basis AS (
       SELECT * FROM jsonb_to_recordset($2::jsonb) AS b (event_id uuid, agent_id uuid, credential_id uuid, secret_hash text, valid_after_ms bigint, scopes text[], assertion_key text, assertion_expires bigint)
     ), checked AS (
       SELECT b.event_id, b.agent_id,
         a.status = 'active' AND c.status = 'active' AND (c.expires_at IS NULL OR c.expires_at > now())
           AND ${secretBindingSql('c')} = b.secret_hash
           AND (extract(epoch FROM a.tokens_valid_after) * 1000)::bigint = b.valid_after_ms AS unchanged,
         b.scopes <@ a.capabilities AS covered
       FROM basis b
       JOIN credentials c ON c.credential_id = b.credential_id AND c.client_id = b.agent_id
       JOIN agents a ON a.agent_id = b.agent_id
       -- the same credentials again, as an array: PostgreSQL guesses 100 rows for jsonb_to_recordset,
       -- and against that guess a scan of the whole credentials table looked cheaper than 100 index
       -- probes (at 10,000 agents, every batch read all 10,000 rows); ANY(array) makes it probe the index
       WHERE c.credential_id = ANY($5::uuid[])
       FOR SHARE OF a, c
     ), fresh AS (
       SELECT event_id, agent_id FROM checked WHERE unchanged AND covered
     ), wanted AS (
       SELECT agent_id, count(*)::int AS n FROM fresh GROUP BY agent_id ORDER BY agent_id
     ), granted AS (
       INSERT INTO token_monthly_counts AS q (agent_id, month, count)
       SELECT agent_id, $3::date, n FROM wanted WHERE $4::int = 0 OR n <= $4::int
       ON CONFLICT (agent_id, month) DO UPDATE SET count = q.count + EXCLUDED.count
       WHERE $4::int = 0 OR q.count + EXCLUDED.count <= $4::int
       RETURNING agent_id
     ), asserted AS (
       SELECT b.event_id, b.assertion_key, b.assertion_expires FROM basis b
       WHERE b.assertion_key IS NOT NULL AND b.event_id IN (SELECT event_id FROM fresh) AND b.agent_id IN (SELECT agent_id FROM granted)
     ), used AS (
       INSERT INTO used_assertions (assertion_key, expires_at)
       SELECT DISTINCT ON (assertion_key) assertion_key, to_timestamp(assertion_expires) FROM asserted ORDER BY assertion_key, event_id
       ON CONFLICT (assertion_key) DO NOTHING
       RETURNING assertion_key
     ), replayed AS (
       SELECT event_id FROM asserted EXCEPT
       (SELECT DISTINCT ON (assertion_key) event_id FROM asserted WHERE assertion_key IN (SELECT assertion_key FROM used) ORDER BY assertion_key, event_id)
     ), events AS (
       ${insertEventsSql('$1', 'e.event_id IN (SELECT event_id FROM fresh) AND e.agent_id IN (SELECT agent_id FROM granted) AND e.event_id NOT IN (SELECT event_id FROM replayed)')}
     )
     SELECT agent_id AS granted_agent, NULL::uuid AS stale_event, NULL::boolean AS narrowed, false AS replayed FROM granted
     UNION ALL
     SELECT NULL, b.event_id, coalesce(k.unchanged AND NOT k.covered, false), false FROM basis b LEFT JOIN checked k ON k.event_id = b.event_id
     WHERE b.event_id NOT IN (SELECT event_id FROM fresh)
     UNION ALL
     SELECT NULL, event_id, false, true FROM replayed`,
    values: [eventsParameter(records.map((record) => record.event)), basisParameter(records), month, quota, records.map((record) => record.basis.credentialId)]
  })
  const granted = new Set(rows.flatMap((row) => row.granted_agent === null ? [] : [row.granted_agent]))
  const stale = new Set(rows.flatMap((row) => row.stale_event === null || row.replayed ? [] : [row.stale_event]))
  const replayed = new Set(rows.flatMap((row) => row.replayed ? [row.stale_event as string] : []))
  const narrowed = new Set(rows.flatMap((row) => row.stale_event !== null && row.narrowed === true ? [row.stale_event] : []))
  const overQuota = new Set(records
    .filter((record) => !stale.has(record.event.eventId) && !granted.has(record.event.agentId as string))
    .map((record) => record.event.agentId as string))
  return { overQuota, stale, narrowed, replayed }
}

function basisParameter (records: IssuanceRecord[]): string {
  return JSON.stringify(records.map(({ event, basis }) => ({
    event_id: event.eventId,
    agent_id: event.agentId,
    credential_id: basis.credentialId,
    secret_hash: basis.secretHash,
    valid_after_ms: basis.validAfterMs,
    scopes: basis.scopes,
    assertion_key: basis.assertion?.key ?? null,
    assertion_expires: basis.assertion?.expiresAt ?? null
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
