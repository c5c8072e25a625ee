import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { build, seedAdmin } from '../../helper.js'
import { auditRows } from '../../routes/oauth/support.js'

/**
 * Issue 11, defect 7: requests without a valid Bearer token each wrote an audit row and were never
 * throttled (3,000 token-less requests, 3,000 rows in 6.5 s), so the audit log could be used to
 * fill the disk. Now failed Bearer authentications count per IP (RATE_LIMIT_BEARER_FAILURES_PER_IP):
 * under the limit each is audited as before; past it the address is answered 429 before any work,
 * and its refusals are audited as one row at the first and one summary per window.
 */
const LIMIT = 20
const FLOOD = 3000
const BATCH = 100

const app = await build(t, { env: { RATE_LIMIT_BEARER_FAILURES_PER_IP: String(LIMIT) } })
const admin = await seedAdmin(app)

async function tokenless (remoteAddress: string): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'GET', url: '/api/v1/agents', remoteAddress })
}

async function rowsFrom (ip: string): Promise<Array<{ action: string, metadata: Record<string, unknown> }>> {
  const { rows } = await app.pg.query('SELECT action, metadata FROM audit_events WHERE host(ip_address) = $1 ORDER BY created_at, event_id', [ip])
  return rows
}

t.test(`${FLOOD} token-less requests from one IP: ${LIMIT} are audited one by one, the rest get 429 and write at most two rows`, async (t) => {
  const flooder = '198.51.100.30'
  const responses: LightMyRequestResponse[] = []
  for (let sent = 0; sent < FLOOD; sent += BATCH) {
    responses.push(...await Promise.all(Array.from({ length: BATCH }, () => tokenless(flooder))))
  }
  const unauthorized = responses.filter((res) => res.statusCode === 401)
  const limited = responses.filter((res) => res.statusCode === 429)
  t.equal(unauthorized.length, LIMIT, `the first ${LIMIT} are 401`)
  t.equal(limited.length, FLOOD - LIMIT, 'every later one is 429')
  const sample = limited[0]
  t.equal(sample?.json().code, 'RATE_LIMIT_EXCEEDED')
  t.match(sample?.headers['content-type'], /^application\/problem\+json/)
  t.ok(limited.length > 0 && limited.every((res) => Number(res.headers['retry-after']) >= 1 && Number(res.headers['retry-after']) <= 60), 'with Retry-After within the minute window')

  // before the summary: the failures under the limit and the first refusal
  t.ok((await rowsFrom(flooder)).length <= LIMIT + 1, `at most ${LIMIT + 1} rows before the window's summary`)
  // the summary is written by a timer once a window; here it is asked for now
  await app.audit.flushSummaries()
  const rows = await rowsFrom(flooder)
  // the bound: LIMIT individual failures + the first refusal + one summary of the others
  t.ok(rows.length <= LIMIT + 2, `${rows.length} audit rows for ${FLOOD} requests (bound ${LIMIT + 2})`)
  t.equal(rows.filter((row) => row.action === 'auth.failed' && row.metadata.reason === 'missing_token').length, LIMIT, 'failures under the limit are audited one by one')
  const refusals = rows.filter((row) => row.action === 'access.denied' && row.metadata.reason === 'bearer_failures_rate_limited')
  const accounted = refusals.reduce((sum, row) => sum + (typeof row.metadata.suppressed === 'number' ? row.metadata.suppressed : 1), 0)
  t.equal(accounted, FLOOD - LIMIT, 'the refusals are all accounted for: the first one, then a count')

  const elsewhere = await tokenless('203.0.113.31')
  t.equal(elsewhere.statusCode, 401, 'another IP is not throttled')
  const admitted = await app.inject({ method: 'GET', url: '/api/v1/agents', headers: admin.headers, remoteAddress: '203.0.113.32' })
  t.equal(admitted.statusCode, 200, 'and a valid token from another IP is served')
  t.equal((await auditRows(app, 'auth.failed', { metadataKey: 'reason', metadataValue: 'missing_token' })).filter((row) => row.ip_address === '203.0.113.31').length, 1,
    'the other IP\'s failure is audited as usual')
})

t.test('a bad token counts like a missing one, and on introspection too', async (t) => {
  const prober = '198.51.100.31'
  for (let n = 0; n < LIMIT; n += 1) {
    const res = await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: 'Bearer not.a.token' }, remoteAddress: prober })
    t.equal(res.statusCode, 401)
  }
  const introspection = await app.inject({
    method: 'POST',
    url: '/api/v1/token/introspect',
    headers: { authorization: 'Bearer not.a.token', 'content-type': 'application/x-www-form-urlencoded' },
    payload: 'token=x',
    remoteAddress: prober
  })
  t.equal(introspection.statusCode, 429, 'an OAuth endpoint refuses the address too')
  t.equal(introspection.json().error, 'rate_limited', 'as an RFC 6749 error')
  t.ok(Number(introspection.headers['retry-after']) >= 1)
})

t.test('RATE_LIMIT_BEARER_FAILURES_PER_IP=0 turns the limit off', async (t) => {
  const unlimited = await build(t, { env: { RATE_LIMIT_BEARER_FAILURES_PER_IP: '0' } })
  const statuses = new Set<number>()
  for (let n = 0; n < 50; n += 1) statuses.add((await unlimited.inject({ method: 'GET', url: '/api/v1/agents', remoteAddress: '198.51.100.32' })).statusCode)
  t.same([...statuses], [401])
})
