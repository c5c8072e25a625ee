import t from 'tap'
import { build, type TestApp } from '../../helper.js'

/** ipAddress is the caller's address; X-Forwarded-For counts only when it comes from a TRUST_PROXY address. */
async function lastAddress (app: TestApp, headers: Record<string, string>, remoteAddress = '127.0.0.1'): Promise<string | null> {
  await app.inject({ method: 'GET', url: '/api/v1/agents/6f1c2a57-9a1e-4d3b-8c55-2b9f3e0a7d41', headers: { authorization: 'Bearer x.y.z', ...headers }, remoteAddress })
  const { rows } = await app.pg.query("SELECT host(ip_address) AS ip FROM audit_events WHERE action = 'auth.failed' ORDER BY created_at DESC LIMIT 1")
  return rows[0]?.ip ?? null
}

t.test('without TRUST_PROXY, X-Forwarded-For is ignored: the socket address is recorded', async (t) => {
  const app = await build(t)
  t.equal(await lastAddress(app, { 'x-forwarded-for': '203.0.113.7' }), '127.0.0.1')
  t.equal(await lastAddress(app, {}, '198.51.100.4'), '198.51.100.4')
})

t.test('from a trusted proxy, the client address it forwards is recorded', async (t) => {
  const app = await build(t, { env: { TRUST_PROXY: '127.0.0.1, 10.0.0.0/8' } })
  t.equal(await lastAddress(app, { 'x-forwarded-for': '203.0.113.7' }), '203.0.113.7')
  t.equal(await lastAddress(app, { 'x-forwarded-for': '203.0.113.7, 10.1.2.3' }), '203.0.113.7', 'trusted hops are skipped')
  t.equal(await lastAddress(app, { 'x-forwarded-for': '198.51.100.9, 203.0.113.7' }, '10.9.9.9'), '203.0.113.7', 'the first untrusted hop from the right, not what the client claims')
})

t.test('from an untrusted peer, a forged X-Forwarded-For is ignored even with TRUST_PROXY set', async (t) => {
  const app = await build(t, { env: { TRUST_PROXY: '10.0.0.1' } })
  t.equal(await lastAddress(app, { 'x-forwarded-for': '203.0.113.7' }, '198.51.100.4'), '198.51.100.4')
})

t.test('entries that are not bare addresses get the normal answer and a usable recorded address, never a 500 (issue 11, defect 4)', async (t) => {
  const app = await build(t, { env: { TRUST_PROXY: '127.0.0.1, 10.0.0.0/8' } })
  const cases: Array<[string, string]> = [
    ['unknown', '127.0.0.1'],
    ['1.2.3.4:8080', '1.2.3.4'],
    ['[::1]', '::1'],
    ['fe80::1%eth0', 'fe80::1'],
    ['203.0.113.7, unknown', '127.0.0.1'],
    ['unknown, 203.0.113.7', '203.0.113.7']
  ]
  for (const [forwarded, recorded] of cases) {
    const before = (await app.pg.query("SELECT count(*)::int AS n FROM audit_events WHERE action = 'auth.failed'")).rows[0].n
    const response = await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { 'x-forwarded-for': forwarded }, remoteAddress: '127.0.0.1' })
    t.equal(response.statusCode, 401, `${forwarded}: the normal 401`)
    const after = (await app.pg.query("SELECT count(*)::int AS n FROM audit_events WHERE action = 'auth.failed'")).rows[0].n
    t.equal(after, before + 1, `${forwarded}: the failed authentication is audited`)
    t.equal(await lastAddress(app, { 'x-forwarded-for': forwarded }), recorded, `${forwarded}: recorded as ${recorded}`)
  }
})
