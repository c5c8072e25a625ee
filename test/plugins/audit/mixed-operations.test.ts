import t from 'tap'
import { agentBody, build, mintToken, seedAdmin, seedAgent } from '../../helper.js'
import { credentialsUrl, INTROSPECT, oauthPost, requestToken, REVOKE } from '../../routes/oauth/support.js'
import { AUDIT, sealAll } from '../../support/audit.js'

/**
 * 1,000 operations of every kind, in a deterministic pseudo-random order, against a model of what
 * each must write; afterwards the table holds exactly the expected events (action, target, caller),
 * no more, no fewer, and the hash chain over them verifies. Agents are seeded through the
 * repository and tokens minted directly, so only the one real client secret costs an argon2 hash.
 */
const OPERATIONS = 1000
const app = await build(t, { env: { RATE_LIMIT_TOKEN_PER_CLIENT: '0', RATE_LIMIT_AUTH_FAILURES_PER_IP: '0', TOKEN_MONTHLY_QUOTA: '0', MAX_AGENTS_PER_OWNER: '0' } })

t.test(`${OPERATIONS} mixed operations write exactly the expected events`, async (t) => {
  const admin = await seedAdmin(app)
  const auditor = await seedAgent(app, { capabilities: ['audit:read'] })
  const targets = await Promise.all(Array.from({ length: 12 }, () => seedAgent(app, { capabilities: ['docs:read'] })))
  const callers = await Promise.all(Array.from({ length: 4 }, () => seedAgent(app, { capabilities: ['docs:read'] })))
  const clientAgent = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: admin.headers, payload: agentBody({ capabilities: ['docs:read'] }) })
  const clientId: string = clientAgent.json().agentId
  const secret: string = (await app.inject({ method: 'POST', url: credentialsUrl(clientId), headers: admin.headers })).json().clientSecret
  const before = new Set((await app.pg.query<{ event_id: string }>('SELECT event_id FROM audit_events')).rows.map((row) => row.event_id))

  const expected = new Map<string, number>()
  const expect = (action: string, agentId: string | null, actorId: string | null) => {
    const key = `${action} ${agentId} ${actorId}`
    expected.set(key, (expected.get(key) ?? 0) + 1)
  }
  const status = new Map(targets.map((target) => [target.agent.agentId, 'active']))
  const issued: Array<{ token: string, revoked: boolean }> = []
  let seed = 42
  const random = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n }
  let version = 0

  const operations: Array<() => Promise<void>> = [
    async function update () {
      const target = targets[random(targets.length)].agent.agentId
      version += 1
      const res = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${target}`, headers: admin.headers, payload: { version: `2.0.${version}` } })
      if (res.statusCode !== 200) throw new Error(res.body)
      expect('agent.updated', target, admin.agent.agentId)
    },
    async function toggle () {
      const target = targets[random(targets.length)].agent.agentId
      const next = status.get(target) === 'active' ? 'suspended' : 'active'
      const res = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${target}`, headers: admin.headers, payload: { status: next } })
      if (res.statusCode !== 200) throw new Error(res.body)
      status.set(target, next)
      expect(next === 'active' ? 'agent.reactivated' : 'agent.suspended', target, admin.agent.agentId)
    },
    async function forbiddenRead () {
      const caller = callers[random(callers.length)]
      const target = targets[random(targets.length)].agent.agentId
      const res = await app.inject({ method: 'GET', url: `/api/v1/agents/${target}`, headers: caller.headers })
      if (res.statusCode !== 404) throw new Error(res.body)
      expect('access.denied', target, caller.agent.agentId)
    },
    async function badToken () {
      const res = await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer garbage.${random(1000)}.x` } })
      if (res.statusCode !== 401) throw new Error(res.body)
      expect('auth.failed', null, null)
    },
    async function issue () {
      const res = await requestToken(app, { agentId: clientId, secret })
      if (res.statusCode !== 200) throw new Error(res.body)
      issued.push({ token: res.json().access_token, revoked: false })
      expect('token.issued', clientId, clientId)
    },
    async function introspectOne () {
      if (issued.length === 0) return
      const { token } = issued[random(issued.length)]
      const res = await oauthPost(app, INTROSPECT, { fields: { token }, headers: admin.headers })
      if (res.statusCode !== 200) throw new Error(res.body)
      // a revoked token is still introspected (answered {active:false}), about nobody
      expect('token.introspected', res.json().active === true ? clientId : null, admin.agent.agentId)
    },
    async function revokeOne () {
      if (issued.length === 0) return
      const entry = issued[random(issued.length)]
      const res = await oauthPost(app, REVOKE, { fields: { token: entry.token }, headers: admin.headers })
      if (res.statusCode !== 200) throw new Error(res.body)
      if (!entry.revoked) expect('token.revoked', clientId, admin.agent.agentId)
      entry.revoked = true
    },
    async function readsWriteNothing () {
      await app.inject({ method: 'GET', url: '/api/v1/agents?limit=5', headers: admin.headers })
      await app.inject({ method: 'GET', url: `${AUDIT}?limit=5`, headers: auditor.headers })
      await app.inject({ method: 'GET', url: `/api/v1/agents/${admin.agent.agentId}`, headers: admin.headers })
    },
    async function register () {
      const res = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: admin.headers, payload: agentBody() })
      if (res.statusCode !== 201) throw new Error(res.body)
      expect('agent.created', res.json().agentId, admin.agent.agentId)
    },
    async function suspendedCaller () {
      // a token of a suspended agent: refused as auth.failed about that agent
      const target = targets.find((candidate) => status.get(candidate.agent.agentId) === 'suspended')
      if (target === undefined) return
      const token = await mintToken(app, target.agent.agentId, { scope: 'docs:read' })
      const res = await app.inject({ method: 'GET', url: `/api/v1/agents/${target.agent.agentId}`, headers: { authorization: `Bearer ${token}` } })
      if (res.statusCode !== 401) throw new Error(res.body)
      expect('auth.failed', target.agent.agentId, null)
    }
  ]

  const started = Date.now()
  for (let n = 0; n < OPERATIONS; n += 1) await operations[random(operations.length)]()
  const elapsed = Date.now() - started

  const { rows } = await app.pg.query<{ event_id: string, action: string, agent_id: string | null, actor: string | null }>(
    "SELECT event_id, action, agent_id, metadata->>'actorId' AS actor FROM audit_events")
  const actual = new Map<string, number>()
  for (const row of rows.filter((candidate) => !before.has(candidate.event_id))) {
    const key = `${row.action} ${row.agent_id} ${row.actor}`
    actual.set(key, (actual.get(key) ?? 0) + 1)
  }
  const total = [...expected.values()].reduce((sum, n) => sum + n, 0)
  t.ok(total > 600, `${total} events expected from ${OPERATIONS} operations (${elapsed} ms)`)
  t.same(Object.fromEntries([...actual].sort()), Object.fromEntries([...expected].sort()), 'exactly the expected events: action, target and caller')

  await sealAll(app)
  const verify = (await app.inject({ method: 'GET', url: `${AUDIT}/verify`, headers: auditor.headers })).json()
  t.same(verify, { intact: true, checked: rows.length, firstBrokenEventId: null }, 'and they form one intact chain')
})
