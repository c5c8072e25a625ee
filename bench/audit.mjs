// npm run bench:audit: GET /api/v1/audit latency with 1,000,000 events in the table, in process
// (npm run bench measures the same shapes over HTTP at 10 connections, as part of its run).
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
import { auditShapes } from './lib/audit-shapes.mjs'
import { seedAuditEvents } from './lib/seed.mjs'

const EVENTS = Number(process.env.BENCH_EVENTS ?? 1_000_000)
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 200)
const WARMUP = 20
const TARGET_P95_MS = 50

const log = (message) => process.stderr.write(`${message}\n`)

const { schema, url } = await benchSchema()
const db = new pg.Pool({ connectionString: url, max: 2 })
const cleanup = async () => {
  await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch(() => {})
  await db.end()
}

try {
  // ---- seed (bench/lib/seed.mjs: bulk INSERT … SELECT with indexes rebuilt after, then the real sealer)
  const seeded = await seedAuditEvents(db, schema, EVENTS)
  log(`seeded ${EVENTS.toLocaleString('en')} events in ${seeded.seedSeconds.toFixed(1)} s`)
  log(`sealed ${seeded.sealed.toLocaleString('en')} events into the hash chain in ${seeded.sealSeconds.toFixed(1)} s ` +
    `(${Math.round(seeded.sealed / seeded.sealSeconds).toLocaleString('en')} events/s, one sealer)`)

  // ---- the app and a caller --------------------------------------------------------------------
  const config = benchConfig(schema, url, { ISSUER_URL: 'http://bench.local', LOG_LEVEL: 'warn', AUDIT_RETENTION_DAYS: '0' })
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

  // ---- query shapes (bench/lib/audit-shapes.mjs, shared with npm run bench) ----------------------
  const shapes = (await auditShapes(db)).map(({ label, path }) => [label, path])

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
