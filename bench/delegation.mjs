// npm run bench:delegation: what validating a delegated (token-exchange) token costs, next to a
// plain one, measured in the same run. AgentIdP from dist/ on a fresh schema; a chain of four
// actors (the default DELEGATION_MAX_DEPTH) built through the real token endpoint; then each
// token validated REQUESTS times by app.auth.validate (signature, claims, and the PostgreSQL read
// of its state: one query either way), interleaved, sequentially. Prints p50/p95 and the ratio.
import pg from 'pg'
import { buildApp } from '../dist/app.js'
import { bootstrapAdmin } from '../dist/services/bootstrap.js'
import { benchConfig, benchSchema } from './support.mjs'

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 2000)
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token'

const { schema, url } = await benchSchema()
// in process: its logs would land in this terminal, so warnings only
const app = await buildApp({ config: benchConfig(schema, url, { ISSUER_URL: 'http://bench.local', LOG_LEVEL: 'warn', RATE_LIMIT_TOKEN_PER_CLIENT: '0', TOKEN_MONTHLY_QUOTA: '0' }) })
const basic = (id, secret) => `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`

async function call (options) {
  const res = await app.inject(options)
  if (res.statusCode >= 300) throw new Error(`${options.method} ${options.url}: ${res.statusCode} ${res.body}`)
  return res.json()
}

try {
  const root = await bootstrapAdmin(app.pg.pool, 'bench-admin@example.com', app.policy.platformScopes)
  const token = async (id, secret, fields) => (await call({
    method: 'POST', url: '/api/v1/token', headers: { authorization: basic(id, secret), 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams(fields).toString()
  })).access_token
  const admin = { authorization: `Bearer ${await token(root.agentId, root.clientSecret, { grant_type: 'client_credentials' })}` }
  const agents = []
  for (let index = 0; index < 5; index += 1) {
    const agent = await call({ method: 'POST', url: '/api/v1/agents', headers: admin, payload: {
      email: `bench-${index}@example.com`, agentType: 'custom', version: '1.0.0', capabilities: ['docs:read'], owner: 'bench', deploymentEnv: 'production'
    } })
    const { clientSecret } = await call({ method: 'POST', url: `/api/v1/agents/${agent.agentId}/credentials`, headers: admin })
    agents.push({ id: agent.agentId, secret: clientSecret })
  }
  // agent i may act for agent i - 1: a chain of four actors after the subject
  for (let index = 0; index < 4; index += 1) {
    await call({ method: 'PATCH', url: `/api/v1/agents/${agents[index].id}`, headers: admin, payload: { mayAct: [agents[index + 1].id] } })
  }
  const tokens = { plain: await token(agents[0].id, agents[0].secret, { grant_type: 'client_credentials' }) }
  let subject = tokens.plain
  for (let hop = 1; hop <= 4; hop += 1) {
    subject = await token(agents[hop].id, agents[hop].secret, { grant_type: EXCHANGE, subject_token: subject, subject_token_type: ACCESS_TOKEN })
    if (hop === 1 || hop === 4) tokens[`${hop} hop${hop > 1 ? 's' : ''}`] = subject
  }

  const samples = Object.fromEntries(Object.keys(tokens).map((name) => [name, []]))
  for (let round = 0; round < REQUESTS + 100; round += 1) {
    for (const [name, value] of Object.entries(tokens)) {
      const started = performance.now()
      const result = await app.auth.validate(value)
      const ms = performance.now() - started
      if (!result.ok) throw new Error(`${name} token invalid: ${result.reason}`)
      if (round >= 100) samples[name].push(ms)
    }
  }
  const quantile = (values, q) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.ceil(q * values.length) - 1)]
  const plain = quantile(samples.plain, 0.5)
  console.log(`validation of one token (signature, claims, server-side state), ${REQUESTS} each, interleaved:`)
  for (const [name, values] of Object.entries(samples)) {
    const p50 = quantile(values, 0.5)
    console.log(`  ${name.padEnd(8)} p50 ${p50.toFixed(3)} ms  p95 ${quantile(values, 0.95).toFixed(3)} ms  ×${(p50 / plain).toFixed(2)} of plain`)
  }
  const jti = JSON.parse(Buffer.from(tokens['4 hops'].split('.')[1], 'base64url').toString()).jti
  const { rows } = await app.pg.query('EXPLAIN (COSTS OFF) SELECT * FROM delegated_tokens d WHERE d.jti = $1', [jti])
  console.log(`the chain row is read by: ${rows.map((row) => row['QUERY PLAN'].trim()).join(' / ')}`)
} finally {
  await app.close()
  const db = new pg.Client({ connectionString: url })
  await db.connect()
  await db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  await db.end()
}
