import { randomBytes } from 'node:crypto'
import t from 'tap'
import { build, seedAdmin } from '../../helper.js'
import { assertOAuthError, auditRows, registerClient, requestToken } from './support.js'

/** Retry-After as a whole number of seconds (RFC 9110 §10.2.3 delay-seconds). */
function retryAfter (header: string | string[] | number | undefined): number {
  if (typeof header !== 'string' || !/^\d+$/.test(header)) return Number.NaN
  return Number(header)
}

t.test('RATE_LIMIT_TOKEN_PER_CLIENT=2: the third token request of a client within a minute is 429 rate_limited with Retry-After', async (t) => {
  const app = await build(t, { env: { RATE_LIMIT_TOKEN_PER_CLIENT: '2' } })
  const admin = await seedAdmin(app)
  const client = await registerClient(app, admin.headers)
  const other = await registerClient(app, admin.headers)

  t.equal((await requestToken(app, client)).statusCode, 200)
  t.equal((await requestToken(app, client, { auth: 'post' })).statusCode, 200)
  const limited = await requestToken(app, client)
  assertOAuthError(t, limited, 429, 'rate_limited')
  const seconds = retryAfter(limited.headers['retry-after'])
  t.ok(seconds >= 1 && seconds <= 60, `Retry-After within the minute window: ${String(limited.headers['retry-after'])}`)

  t.equal((await requestToken(app, other)).statusCode, 200, 'the limit is per client_id: another client is unaffected')
  t.equal((await auditRows(app, 'token.issued', { agentId: client.agentId })).length, 2, 'the refused request issued nothing')
  const denied = await auditRows(app, 'access.denied', { agentId: client.agentId })
  t.equal(denied.length, 1, 'the breach is audited once')
  t.equal(denied[0]?.metadata.reason, 'rate_limited')
})

t.test('RATE_LIMIT_AUTH_FAILURES_PER_IP=3: after 3 failures an IP is refused even with the right secret, while the agent still gets tokens from elsewhere', async (t) => {
  const app = await build(t, { env: { RATE_LIMIT_AUTH_FAILURES_PER_IP: '3' } })
  const admin = await seedAdmin(app)
  const client = await registerClient(app, admin.headers)
  const wrong = { agentId: client.agentId, secret: 'sk_live_' + randomBytes(48).toString('base64url') }
  const attacker = '198.51.100.7'

  for (let i = 0; i < 3; i += 1) {
    assertOAuthError(t, await requestToken(app, wrong, { remoteAddress: attacker }), 401, 'invalid_client')
  }
  const blocked = await requestToken(app, client, { remoteAddress: attacker })
  assertOAuthError(t, blocked, 429, 'rate_limited')
  const seconds = retryAfter(blocked.headers['retry-after'])
  t.ok(seconds >= 1 && seconds <= 60, `Retry-After within the minute window: ${String(blocked.headers['retry-after'])}`)
  t.equal((await requestToken(app, wrong, { remoteAddress: attacker, auth: 'post' })).statusCode, 429, 'further failures are refused too')

  const fromElsewhere = await requestToken(app, client, { remoteAddress: '203.0.113.9' })
  t.equal(fromElsewhere.statusCode, 200, `the real agent, from its own address, is not locked out: ${fromElsewhere.body}`)
})

t.test('RATE_LIMIT_AUTH_FAILURES_PER_IP=3: successful authentications do not count against the IP', async (t) => {
  const app = await build(t, { env: { RATE_LIMIT_AUTH_FAILURES_PER_IP: '3' } })
  const admin = await seedAdmin(app)
  const client = await registerClient(app, admin.headers)
  const busy = '192.0.2.44'

  for (let i = 0; i < 6; i += 1) t.equal((await requestToken(app, client, { remoteAddress: busy })).statusCode, 200, `success ${i + 1}`)
  const failure = await requestToken(app, { agentId: client.agentId, secret: 'sk_live_nope' }, { remoteAddress: busy })
  assertOAuthError(t, failure, 401, 'invalid_client')
})

t.test('TOKEN_MONTHLY_QUOTA=2: the third token of the month is 429 quota_exceeded, Retry-After until the next UTC month', async (t) => {
  const app = await build(t, { env: { TOKEN_MONTHLY_QUOTA: '2' } })
  const admin = await seedAdmin(app)
  const client = await registerClient(app, admin.headers)
  const other = await registerClient(app, admin.headers)

  t.equal((await requestToken(app, client)).statusCode, 200)
  t.equal((await requestToken(app, client)).statusCode, 200)
  const refused = await requestToken(app, client)
  assertOAuthError(t, refused, 429, 'quota_exceeded')

  const now = new Date()
  const untilNextMonth = Math.ceil((Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1) - now.getTime()) / 1000)
  const seconds = retryAfter(refused.headers['retry-after'])
  t.ok(Math.abs(seconds - untilNextMonth) <= 10, `Retry-After ${String(refused.headers['retry-after'])} ≈ ${untilNextMonth} s to the next UTC month`)

  const { rows } = await app.pg.query<{ count: number }>('SELECT count FROM token_monthly_counts WHERE agent_id = $1', [client.agentId])
  t.same(rows.map((row) => row.count), [2], 'the durable count stays at the quota')
  t.equal((await auditRows(app, 'token.issued', { agentId: client.agentId })).length, 2, 'only two tokens were issued')
  const denied = await auditRows(app, 'access.denied', { agentId: client.agentId })
  t.same(denied.map((row) => row.metadata.reason), ['quota_exceeded'], 'the refusal is audited once')
  t.equal((await requestToken(app, other)).statusCode, 200, 'the quota is per agent')
})

t.test('a client in a retry loop past its rate limit or its quota costs no audit row per refusal', async (t) => {
  // found by test/resilience/races.test.ts: every 429 of a client past RATE_LIMIT_TOKEN_PER_CLIENT
  // or TOKEN_MONTHLY_QUOTA wrote an access.denied row of its own, so any client (or whoever holds
  // its secret) could fill the audit log at the token endpoint's rate
  const app = await build(t, { env: { RATE_LIMIT_TOKEN_PER_CLIENT: '2', TOKEN_MONTHLY_QUOTA: '3' } })
  const admin = await seedAdmin(app)
  const limited = await registerClient(app, admin.headers)
  const spent = await registerClient(app, admin.headers)
  const REQUESTS = 40

  const answers = []
  // from ten addresses: the limit is the client's, and so is the ledger of its refusals
  for (let n = 0; n < REQUESTS; n += 1) {
    answers.push(await requestToken(app, limited, { remoteAddress: `198.51.100.${(n % 10) + 1}`, ...(n % 2 === 0 ? {} : { fields: { scope: 'agents:write' } }) }))
  }
  t.equal(answers.filter((res) => res.statusCode === 429).length, REQUESTS - 2, 'past the limit every request is 429, the ones asking for a scope they lack too')
  t.same((await auditRows(app, 'access.denied', { agentId: limited.agentId })).map((row) => row.metadata.reason), ['invalid_scope', 'rate_limited'],
    'the refusal within the limit, then the first breach: no row per refusal')

  // the quota, on another instance of the same deployment without the rate limit
  const quotaApp = await build(t, { env: { RATE_LIMIT_TOKEN_PER_CLIENT: '0', TOKEN_MONTHLY_QUOTA: '3' }, databaseUrl: app.databaseUrl })
  for (let n = 0; n < REQUESTS; n += 1) await requestToken(quotaApp, spent)
  t.same((await auditRows(app, 'access.denied', { agentId: spent.agentId })).map((row) => row.metadata.reason), ['quota_exceeded'], 'one quota refusal written in full')

  await app.audit.flushSummaries()
  await quotaApp.audit.flushSummaries()
  const rows = [...await auditRows(app, 'access.denied', { agentId: limited.agentId }), ...await auditRows(app, 'access.denied', { agentId: spent.agentId })]
  const summaries = rows.filter((row) => row.metadata.summary === true)
  t.same(summaries.map((row) => [row.metadata.reason, row.metadata.suppressed, row.metadata.actorId]).sort(),
    [['quota_exceeded', REQUESTS - 3 - 1, spent.agentId], ['rate_limited', REQUESTS - 2 - 1, limited.agentId]],
    'the others are counted in one summary each, about the client')
  t.same(summaries.map((row) => [row.metadata.reason, row.ip_address, row.metadata.addresses ?? null]).sort(),
    [['quota_exceeded', '127.0.0.1', null], ['rate_limited', null, 'many']], 'naming the address when there was one')
})
