// Bulk seeding of the bench schema, in SQL, before any server starts.
//
// Agents: `agents` real rows (10,000 by default) with one secret credential each. argon2id costs
// ≈ 45 ms a hash here, so only the credentials the load uses (`clients`, 200 by default, plus the
// operator) get the hash of their own secret, computed in parallel on libuv's pool; every other
// row gets the hash of one random secret that nobody holds (a valid row that no presented secret
// verifies against). A secret embeds its credential id, so each used credential has its own.
//
// Audit events: one INSERT … SELECT generate_series with the table's secondary indexes dropped
// first and rebuilt after (the same indexes, built in bulk), then ANALYZE, then sealed into the
// hash chain by the product's own sealer — so no server starts with a backlog to seal.
import { randomUUID } from 'node:crypto'
import { generateSecret, hashSecret } from '../../dist/services/secrets.js'
import { sealPending } from '../../dist/services/audit/sealer.js'

export const PLATFORM_SCOPES = ['agents:read', 'agents:write', 'credentials:read', 'credentials:write', 'tokens:read', 'audit:read']
/** What seeded agents may be granted: resource-server scopes, none of the platform's. */
export const AGENT_CAPABILITIES = ['docs:read', 'docs:write']
const AGENT_TYPES = ['screener', 'classifier', 'orchestrator', 'extractor', 'summarizer', 'router', 'monitor', 'custom']
// 10,000 agents over 200 owners: 50 each, under MAX_AGENTS_PER_OWNER's default of 100
const OWNERS = 200

async function timed (work) {
  const started = performance.now()
  const result = await work()
  return { result, seconds: (performance.now() - started) / 1000 }
}

/**
 * Seeds `agents` agents and their credentials; the first `clients` (and the operator) can
 * authenticate. Client i may act for client i - 1 (may_act of agent i names agent i + 1, round
 * the ring): token exchange pairs for the load. Returns the usable clients, the operator (every
 * platform scope: a Bearer token for GET /agents and /audit, client credentials for
 * introspection) and every agent id.
 */
export async function seedAgents (pool, { agents, clients }) {
  const ids = Array.from({ length: agents }, () => randomUUID())
  const credentialIds = Array.from({ length: agents }, () => randomUUID())
  const operator = { agentId: randomUUID(), credentialId: randomUUID() }
  operator.secret = generateSecret(operator.credentialId)
  const used = ids.slice(0, clients).map((agentId, index) => ({
    agentId, credentialId: credentialIds[index], secret: generateSecret(credentialIds[index])
  }))
  const hashing = await timed(() => Promise.all([
    hashSecret(generateSecret(randomUUID())), // the filler: a secret nobody holds
    hashSecret(operator.secret),
    ...used.map((client) => hashSecret(client.secret))
  ]))
  const [filler, operatorHash, ...hashes] = hashing.result
  const mayAct = ids.map((_, index) => index < clients ? ids[(index + 1) % clients] : null)
  const inserting = await timed(async () => {
    // one connection for the transaction (`pool` hands out a different one per query)
    const db = await pool.connect()
    try {
      await db.query('BEGIN')
      await db.query(`
        INSERT INTO agents (agent_id, email, agent_type, version, capabilities, owner, deployment_env, may_act, created_at, updated_at)
        SELECT id, 'bench-' || n || '@bench.local', ($3::text[])[1 + n % 8], '1.0.0', $4::text[], 'team-' || (n % $5),
          'production', CASE WHEN may IS NULL THEN '{}'::uuid[] ELSE ARRAY[may] END,
          now() - n * interval '1 second', now() - n * interval '1 second'
        FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS t(id, may, n)`, [ids, mayAct, AGENT_TYPES, AGENT_CAPABILITIES, OWNERS])
      await db.query(`
        INSERT INTO credentials (credential_id, client_id, secret_hash)
        SELECT credential, agent, coalesce(hash, $4) FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS t(credential, agent, hash)`,
      [credentialIds, ids, hashes.concat(Array(agents - clients).fill(null)), filler])
      await db.query(`INSERT INTO agents (agent_id, email, agent_type, version, capabilities, owner, deployment_env)
        VALUES ($1, 'bench-operator@bench.local', 'monitor', '1.0.0', $2, 'bench-ops', 'production')`, [operator.agentId, PLATFORM_SCOPES])
      await db.query('INSERT INTO credentials (credential_id, client_id, secret_hash) VALUES ($1, $2, $3)', [operator.credentialId, operator.agentId, operatorHash])
      await db.query('COMMIT')
      await db.query('ANALYZE agents')
      await db.query('ANALYZE credentials')
    } finally {
      db.release()
    }
  })
  return { clients: used, operator, agentIds: ids, hashSeconds: hashing.seconds, insertSeconds: inserting.seconds }
}

/**
 * `events` audit events over the last `days` days, newest last: 1,000 agents, one busy (20 % of
 * the trail), a token-heavy mix of actions. `days` stays under AUDIT_RETENTION_DAYS (90 by default)
 * so a server's retention job finds nothing to prune. Returns seconds for seeding and sealing.
 */
export async function seedAuditEvents (db, schema, events, { days = 89 } = {}) {
  // `db`: a pg.Pool (the sealer takes connections of its own)
  const { rows: indexes } = await db.query(
    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'audit_events' AND indexname <> 'audit_events_pkey'", [schema])
  const seeded = await timed(async () => {
    for (const { indexname } of indexes) await db.query(`DROP INDEX ${indexname}`)
    await db.query(`
      WITH agents AS (SELECT array_agg(gen_random_uuid()) AS ids FROM generate_series(1, 1000)),
      actions AS (SELECT ARRAY['token.issued','token.issued','token.issued','token.issued','token.issued','token.issued',
        'token.introspected','token.introspected','auth.failed','access.denied','token.revoked','agent.updated',
        'credential.generated','credential.rotated','agent.suspended','agent.reactivated']::text[] AS names)
      INSERT INTO audit_events (event_id, agent_id, action, outcome, ip_address, user_agent, metadata, created_at)
      SELECT gen_random_uuid(),
        CASE WHEN n % 5 = 0 THEN agents.ids[1] ELSE agents.ids[2 + (n::bigint * 7919) % 999] END,
        a.name, CASE WHEN a.name IN ('auth.failed', 'access.denied') THEN 'failure' ELSE 'success' END,
        ('10.' || (n % 250) || '.' || (n % 199) || '.7')::inet, 'agent-sdk/1.4 (bench)',
        jsonb_build_object('actorId', agents.ids[1 + n % 1000], 'jti', md5(n::text), 'scope', 'docs:read agents:read'),
        now() - make_interval(days => $2) + (n * make_interval(days => $2) / $1)
      FROM generate_series(1, $1) AS n, agents, actions,
        LATERAL (SELECT actions.names[1 + (n * 31) % 16] AS name) AS a`, [events, days])
    for (const { indexdef } of indexes) await db.query(indexdef)
    await db.query('ANALYZE audit_events')
  })
  // the product's sealer, one instance, as a server would run it (bigger batches: fewer commits)
  const sealed = await timed(() => sealPending(db, 5000))
  // after sealing: statistics taken before it describe a table whose every row has since changed,
  // and with them the planner walks audit_events_created_at_idx for rare filters (first pages of
  // auth.failed or of one agent scanning every newer row). A trail that grew over 89 days has been
  // vacuumed and analysed long ago: so is this one.
  await db.query('VACUUM ANALYZE audit_events')
  await db.query('ANALYZE audit_seals')
  return { seedSeconds: seeded.seconds, sealSeconds: sealed.seconds, sealed: sealed.result }
}
