import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { build } from '../helper.js'
import { currentMonth, secondsUntilNextMonth } from '../../services/issuance-log.js'
import { bootstrap, registerClient, requestToken, tokenFor, withDb, type Client, type Tap } from '../support/oauth-flow.js'

/**
 * TOKEN_MONTHLY_QUOTA under concurrency: two instances share the database, requests arrive in
 * parallel on both, and the quota must hold exactly — never one token more — with the durable
 * count, the distinct jtis issued and the token.issued events all agreeing.
 */

const QUOTA = 50
// every request of a cold burst runs argon2 (≈ 45 ms, two at a time per instance): keep it modest
const COLD_BURST = 60
// only the quota: a cold burst is 60 first authentications at once from one address, which the
// per-address reservation of verifications (shared by the instances) would partly refuse
const env = { TOKEN_MONTHLY_QUOTA: String(QUOTA), RATE_LIMIT_TOKEN_PER_CLIENT: '0', RATE_LIMIT_AUTH_FAILURES_PER_IP: '0' }
const a = await build(t, { env })
const b = await build(t, { databaseUrl: a.databaseUrl, env })
const admin = await bootstrap(a.databaseUrl)
const adminToken = await tokenFor(a, admin)

interface Tally { issued: LightMyRequestResponse[], refused: LightMyRequestResponse[], other: LightMyRequestResponse[] }

/** `n` token requests at once, alternating between the two instances. */
async function burst (client: Client, n: number): Promise<Tally> {
  const responses = await Promise.all(Array.from({ length: n }, (_, i) => requestToken(i % 2 === 0 ? a : b, client)))
  return {
    issued: responses.filter((res) => res.statusCode === 200),
    refused: responses.filter((res) => res.statusCode === 429),
    other: responses.filter((res) => res.statusCode !== 200 && res.statusCode !== 429)
  }
}

interface Durable { counted: number | null, rows: number, events: number, refusalsAudited: number }

async function durableState (agentId: string): Promise<Durable> {
  // a client's repeated quota refusals are written as the first in full and a summary of the rest
  await a.audit.flushSummaries()
  await b.audit.flushSummaries()
  return await withDb(a.databaseUrl, async (db) => {
    const { rows: [state] } = await db.query<{ counted: number | null, rows: number, events: number, refusals: number }>(
      `SELECT (SELECT count FROM token_monthly_counts WHERE agent_id = $1 AND month = $2::date) AS counted,
         (SELECT count(DISTINCT metadata->>'jti')::int FROM audit_events WHERE action = 'token.issued' AND agent_id = $1) AS rows,
         (SELECT count(*)::int FROM audit_events WHERE agent_id = $1 AND action = 'token.issued') AS events,
         (SELECT coalesce(sum(coalesce((metadata->>'suppressed')::int, 1)), 0)::int FROM audit_events WHERE agent_id = $1
            AND action = 'access.denied' AND metadata->>'reason' = 'quota_exceeded') AS refusals`, [agentId, currentMonth()])
    return { counted: state.counted, rows: state.rows, events: state.events, refusalsAudited: state.refusals }
  })
}

function assertQuotaRefusals (t: Tap, refused: LightMyRequestResponse[], label: string): void {
  const expected = secondsUntilNextMonth()
  const wrong = refused.filter((res) => {
    const body = res.json() as { error?: string }
    const retryAfter = Number(res.headers['retry-after'])
    return body.error !== 'quota_exceeded' || !Number.isInteger(retryAfter) || Math.abs(retryAfter - expected) > 10
  })
  t.same(wrong.map((res) => `${res.headers['retry-after']} ${res.body}`), [],
    `${label}: every refusal is 429 quota_exceeded with Retry-After ≈ the seconds until the next UTC month (${expected})`)
}

function jtiOf (res: LightMyRequestResponse): string {
  const token = (res.json() as { access_token: string }).access_token
  return (JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()) as { jti: string }).jti
}

t.test('parallel requests at the quota boundary on two instances never issue more than the quota', async (t) => {
  const client = await registerClient(a, adminToken)

  // one request per instance first, so each verifies the secret once (argon2) and the bursts stay cheap
  const first = [await requestToken(a, client), await requestToken(b, client)]
  const rest = await burst(client, 28)
  const warm = { ...rest, issued: [...first.filter((res) => res.statusCode === 200), ...rest.issued] }
  t.equal(warm.issued.length, 30, `30 tokens below the quota are all issued (others: ${warm.other.map((res) => res.body).join(' ')})`)

  const boundary = await burst(client, 50)
  t.same(boundary.other.map((res) => `${res.statusCode} ${res.body}`), [], 'no request failed otherwise')
  t.equal(boundary.issued.length, QUOTA - 30, `exactly ${QUOTA - 30} of 50 parallel requests at the boundary are issued`)
  t.equal(boundary.refused.length, 50 - (QUOTA - 30), 'the rest are refused')
  assertQuotaRefusals(t, boundary.refused, 'at the boundary')

  const beyond = await burst(client, 10)
  t.equal(beyond.issued.length, 0, 'nothing more is issued once the quota is used up')
  t.equal(beyond.refused.length, 10, 'every further request is refused')
  assertQuotaRefusals(t, beyond.refused, 'beyond the quota')

  const issued = [...warm.issued, ...boundary.issued, ...beyond.issued]
  t.equal(issued.length, QUOTA, `exactly ${QUOTA} tokens in total`)
  t.equal(new Set(issued.map(jtiOf)).size, QUOTA, 'each with its own jti')
  const durable = await durableState(client.clientId)
  t.same(durable, { counted: QUOTA, rows: QUOTA, events: QUOTA, refusalsAudited: 40 },
    'token_monthly_counts, distinct jtis and token.issued events equal the tokens issued; each refusal is audited (in full or in a summary\'s count)')
})

t.test('a cold burst far past the quota on two instances issues exactly the quota', async (t) => {
  const client = await registerClient(a, adminToken)
  const cold = await burst(client, COLD_BURST)
  t.same(cold.other.map((res) => `${res.statusCode} ${res.body}`), [], 'no request failed otherwise')
  t.equal(cold.issued.length, QUOTA, `exactly ${QUOTA} of ${COLD_BURST} are issued`)
  t.equal(cold.refused.length, COLD_BURST - QUOTA, 'the rest are refused')
  assertQuotaRefusals(t, cold.refused, 'cold burst')
  const durable = await durableState(client.clientId)
  t.same(durable, { counted: QUOTA, rows: QUOTA, events: QUOTA, refusalsAudited: COLD_BURST - QUOTA }, 'the durable records agree')
})

t.test('the quota is per agent: another agent is unaffected by one that used its quota up', async (t) => {
  const spent = await registerClient(a, adminToken)
  await withDb(a.databaseUrl, (db) => db.query(
    'INSERT INTO token_monthly_counts (agent_id, month, count) VALUES ($1, $2::date, $3)', [spent.clientId, currentMonth(), QUOTA]))
  t.equal((await requestToken(b, spent)).statusCode, 429, 'the agent at its quota is refused')
  const fresh = await registerClient(a, adminToken)
  t.equal((await requestToken(b, fresh)).statusCode, 200, 'another agent still gets a token')
})

t.test('the quota counts UTC months: last month\'s count does not count against this month', async (t) => {
  const client = await registerClient(a, adminToken)
  const lastMonth = await withDb(a.databaseUrl, async (db) => {
    const { rows } = await db.query<{ month: string }>(
      `INSERT INTO token_monthly_counts (agent_id, month, count)
       VALUES ($1, ($2::date - interval '1 month')::date, $3)
       RETURNING to_char(month, 'YYYY-MM-DD') AS month`, [client.clientId, currentMonth(), QUOTA])
    return rows[0].month
  })
  const res = await requestToken(a, client)
  t.equal(res.statusCode, 200, `a full count for ${lastMonth} does not stop a token this month (${res.body.slice(0, 120)})`)
  const counts = await withDb(a.databaseUrl, async (db) => (await db.query<{ month: string, count: number }>(
    "SELECT to_char(month, 'YYYY-MM-DD') AS month, count FROM token_monthly_counts WHERE agent_id = $1 ORDER BY month", [client.clientId])).rows)
  t.same(counts, [{ month: lastMonth, count: QUOTA }, { month: currentMonth(), count: 1 }], 'this month starts its own count; last month\'s is untouched')
})

t.test('months are UTC months whatever the process time zone', async (t) => {
  const saved = process.env.TZ
  try {
    // UTC+14: local time is already the next day (and month) long before UTC is
    process.env.TZ = 'Pacific/Kiritimati'
    t.equal(currentMonth(new Date('2025-12-31T12:00:00Z')), '2025-12-01', 'still December in UTC although January locally')
    t.equal(secondsUntilNextMonth(new Date('2025-12-31T12:00:00Z')), 12 * 3600, 'the quota resets at UTC midnight')
    process.env.TZ = 'America/Los_Angeles'
    t.equal(currentMonth(new Date('2026-02-01T03:00:00Z')), '2026-02-01', 'already February in UTC although January locally')
  } finally {
    if (saved === undefined) delete process.env.TZ
    else process.env.TZ = saved
  }
  t.equal(currentMonth(new Date('2024-02-29T23:59:59.999Z')), '2024-02-01', 'the last millisecond of a month')
  t.equal(currentMonth(new Date('2024-03-01T00:00:00.000Z')), '2024-03-01', 'the first millisecond of the next')
  t.equal(secondsUntilNextMonth(new Date('2024-02-29T23:59:59.000Z')), 1, 'Retry-After one second before the rollover')
})
