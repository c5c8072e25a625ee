// npm run bench:audit: GET /api/v1/audit latency with 1,000,000 events in the table.
//   1. a fresh schema, migrated; 1,000,000 events seeded by one INSERT … SELECT generate_series
//      (indexes dropped first and rebuilt after: the same indexes, built in bulk), then ANALYZE
//   2. the events sealed into the hash chain by the real sealer (its throughput is printed)
//   3. AgentIdP from dist/, called through app.inject: Bearer validation, policy, route, SQL,
//      serialisation — the whole request, minus the socket
//   4. per query shape: 20 warm-up requests, then 200 timed ones; p50/p95/p99; target p95 < 50 ms
// Shapes: first pages and deep pages (a cursor 100,000 rows in), each filter alone and combined,
// a date range, limit=200; plus /audit/verify over one day. Exits 1 if any p95 misses the target.
import { randomUUID } from 'node:crypto'
import pg from 'pg'
import { buildApp } from '../dist/app.js'
import { benchConfig, benchSchema } from './support.mjs'
import { newTokenId } from '../dist/lib/token-id.js'
import { encodeCursor } from '../dist/lib/cursor.js'
import { sealPending } from '../dist/services/audit/sealer.js'

const EVENTS = Number(process.env.BENCH_EVENTS ?? 1_000_000)
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 200)
const WARMUP = 20
const TARGET_P95_MS = 50
const DEEP = 100_000

const log = (message) => process.stderr.write(`${message}\n`)

async function seconds (work) {
  const started = performance.now()
  const result = await work()
  return { result, seconds: (performance.now() - started) / 1000 }
}

const { schema, url } = await benchSchema()
const db = new pg.Pool({ connectionString: url, max: 2 })
const cleanup = async () => {
  await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {})
  await db.end()
}

try {
  // ---- seed ----------------------------------------------------------------------------------
  const { rows: indexes } = await db.query(
    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'audit_events' AND indexname <> 'audit_events_pkey'", [schema])
  const seeded = await seconds(async () => {
    for (const { indexname } of indexes) await db.query(`DROP INDEX ${indexname}`)
    // 1,000 agents, one busy (20 % of the trail), a token-heavy mix of actions, 90 days, newest last
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
        now() - interval '90 days' + (n * interval '90 days' / $1)
      FROM generate_series(1, $1) AS n, agents, actions,
        LATERAL (SELECT actions.names[1 + (n * 31) % 16] AS name) AS a`, [EVENTS])
    for (const { indexdef } of indexes) await db.query(indexdef)
    await db.query('ANALYZE audit_events')
  })
  log(`seeded ${EVENTS.toLocaleString('en')} events in ${seeded.seconds.toFixed(1)} s`)

  const sealed = await seconds(() => sealPending(db, 5000))
  log(`sealed ${sealed.result.toLocaleString('en')} events into the hash chain in ${sealed.seconds.toFixed(1)} s ` +
    `(${Math.round(sealed.result / sealed.seconds).toLocaleString('en')} events/s, one sealer)`)
  await db.query('ANALYZE audit_seals')

  // ---- the app and a caller --------------------------------------------------------------------
  const config = benchConfig(schema, url, { ISSUER_URL: 'http://bench.local', AUDIT_RETENTION_DAYS: '0' })
  const app = await buildApp({ config })
  await app.ready()
  const auditorId = randomUUID()
  const credentialId = randomUUID()
  await db.query(`INSERT INTO agents (agent_id, email, agent_type, version, capabilities, owner, deployment_env)
    VALUES ($1, $2, 'monitor', '1.0.0', ARRAY['audit:read'], 'bench', 'production')`, [auditorId, `${auditorId}@bench.local`])
  await db.query("INSERT INTO credentials (credential_id, client_id, secret_hash) VALUES ($1, $2, 'unused')", [credentialId, auditorId])
  const now = Math.floor(Date.now() / 1000)
  const token = await app.keys.sign({
    iss: config.ISSUER_URL, sub: auditorId, client_id: auditorId, aud: config.ISSUER_URL, iat: now, exp: now + 3600,
    jti: newTokenId(credentialId), scope: 'audit:read'
  })
  const headers = { authorization: `Bearer ${token}` }

  // ---- query shapes ----------------------------------------------------------------------------
  const { rows: [busy] } = await db.query('SELECT agent_id FROM audit_events GROUP BY agent_id ORDER BY count(*) DESC LIMIT 1')
  const { rows: [quiet] } = await db.query('SELECT agent_id FROM audit_events GROUP BY agent_id ORDER BY count(*) LIMIT 1')
  const weekAgo = new Date(Date.now() - 7 * 86_400_000).toISOString()
  const twoWeeksAgo = new Date(Date.now() - 14 * 86_400_000).toISOString()

  /** A cursor `offset` rows into the matching events, as a client following nextCursor would hold. */
  async function cursorAt (where, values, offset) {
    const { rows } = await db.query(
      `SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at, event_id FROM audit_events
       ${where} ORDER BY created_at DESC, event_id DESC OFFSET ${offset} LIMIT 1`, values)
    return rows.length === 0 ? null : encodeCursor({ createdAt: rows[0].at, id: rows[0].event_id })
  }
  const deep = async (where, values, query, offset = DEEP) => {
    const cursor = await cursorAt(where, values, offset)
    return cursor === null ? null : `${query}${query.includes('?') ? '&' : '?'}cursor=${cursor}`
  }

  const shapes = [
    ['first page, no filter', '/api/v1/audit'],
    ['first page, limit=200', '/api/v1/audit?limit=200'],
    [`deep page (${DEEP.toLocaleString('en')} in), no filter`, await deep('', [], '/api/v1/audit')],
    ['agentId (busy agent), first page', `/api/v1/audit?agentId=${busy.agent_id}`],
    [`agentId (busy agent), deep page (${DEEP.toLocaleString('en')} in)`, await deep('WHERE agent_id = $1', [busy.agent_id], `/api/v1/audit?agentId=${busy.agent_id}`)],
    ['agentId (quiet agent), first page', `/api/v1/audit?agentId=${quiet.agent_id}`],
    ['action=auth.failed, first page', '/api/v1/audit?action=auth.failed'],
    [`action=token.issued, deep page (${DEEP.toLocaleString('en')} in)`, await deep("WHERE action = 'token.issued'", [], '/api/v1/audit?action=token.issued')],
    ['outcome=failure, first page', '/api/v1/audit?outcome=failure'],
    ['agentId+action+outcome, first page', `/api/v1/audit?agentId=${busy.agent_id}&action=token.issued&outcome=success`],
    ['agentId+action, deep page (50,000 in)', await deep("WHERE agent_id = $1 AND action = 'token.issued'", [busy.agent_id], `/api/v1/audit?agentId=${busy.agent_id}&action=token.issued`, 50_000)],
    ['date range (one week), first page', `/api/v1/audit?startDate=${twoWeeksAgo}&endDate=${weekAgo}`],
    ['date range + action=auth.failed', `/api/v1/audit?startDate=${twoWeeksAgo}&endDate=${weekAgo}&action=auth.failed`],
    ['verify, one day', `/api/v1/audit/verify?startDate=${new Date(Date.now() - 2 * 86_400_000).toISOString()}&endDate=${new Date(Date.now() - 86_400_000).toISOString()}`]
  ]

  function percentile (sorted, p) {
    return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
  }

  const results = []
  for (const [label, path] of shapes) {
    if (path === null) continue
    const requests = label.startsWith('verify') ? 20 : REQUESTS
    const timings = []
    let rows = 0
    for (let n = 0; n < WARMUP + requests; n += 1) {
      const started = performance.now()
      const res = await app.inject({ method: 'GET', url: path, headers })
      const elapsed = performance.now() - started
      if (res.statusCode !== 200) throw new Error(`${label}: ${res.statusCode} ${res.body.slice(0, 200)}`)
      if (n >= WARMUP) timings.push(elapsed)
      rows = res.json().data?.length ?? res.json().checked
    }
    timings.sort((x, y) => x - y)
    results.push({ label, rows, p50: percentile(timings, 50), p95: percentile(timings, 95), p99: percentile(timings, 99), timed: !label.startsWith('verify') })
  }
  await app.close()

  const pad = (text, width) => String(text).padEnd(width)
  const ms = (value) => `${value.toFixed(2)} ms`
  console.log(`\nGET /api/v1/audit with ${EVENTS.toLocaleString('en')} events (${REQUESTS} timed requests per shape, in process)\n`)
  console.log(`${pad('shape', 48)}${pad('rows', 8)}${pad('p50', 12)}${pad('p95', 12)}${pad('p99', 12)}`)
  for (const row of results) console.log(`${pad(row.label, 48)}${pad(row.rows, 8)}${pad(ms(row.p50), 12)}${pad(ms(row.p95), 12)}${pad(ms(row.p99), 12)}`)
  const misses = results.filter((row) => row.timed && row.p95 >= TARGET_P95_MS)
  console.log(`\ntarget: p95 < ${TARGET_P95_MS} ms for every list shape: ${misses.length === 0 ? 'met' : `MISSED by ${misses.map((row) => row.label).join(', ')}`}`)
  process.exitCode = misses.length === 0 ? 0 : 1
} finally {
  await cleanup()
}
