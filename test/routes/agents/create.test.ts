import t from 'tap'
import { agentBody, build, RESOURCE_METADATA, seedAdmin, seedAgent } from '../../helper.js'
import { AGENTS, agentUrl, assertProblem, assertValidationError, auditByActor, auditOf, countAgentsWithEmail } from './support.js'

const AGENT_FIELDS = ['agentId', 'agentType', 'audiences', 'authMethods', 'capabilities', 'clientIdUrl', 'createdAt', 'deploymentEnv', 'dpopBound', 'email', 'federatedSubjects', 'mayAct', 'owner', 'status', 'updatedAt', 'version']
const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

const app = await build(t)
const admin = await seedAdmin(app)

t.test('an agents:write caller registers an agent: 201 with exactly the Agent fields, active, stored', async (t) => {
  const body = agentBody({ agentType: 'classifier', version: '2.1.0-rc.1+build.5', capabilities: ['docs:read', 'docs:write'], owner: 'team-create', deploymentEnv: 'production' })
  const res = await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: body })

  t.equal(res.statusCode, 201, res.body)
  const agent = res.json()
  t.same(Object.keys(agent).sort(), AGENT_FIELDS)
  t.match(agent.agentId, UUID_V4)
  t.match(agent, { ...body, status: 'active' })
  t.ok(Number.isFinite(Date.parse(agent.createdAt)) && Number.isFinite(Date.parse(agent.updatedAt)), 'timestamps are ISO instants')
  const read = await app.inject({ method: 'GET', url: agentUrl(agent.agentId), headers: admin.headers })
  t.equal(read.statusCode, 200)
  t.same(read.json(), agent, 'the stored agent reads back identically')
})

t.test('two registrations get distinct agentIds', async (t) => {
  const first = await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: agentBody() })
  const second = await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: agentBody() })
  t.equal(first.statusCode, 201)
  t.equal(second.statusCode, 201)
  t.not(first.json().agentId, second.json().agentId)
})

t.test('registration writes exactly one agent.created event naming the new agent and the caller', async (t) => {
  const res = await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: agentBody({ deploymentEnv: 'development' }) })
  t.equal(res.statusCode, 201)
  const events = await auditOf(app, res.json().agentId)
  t.equal(events.length, 1, 'one event about the new agent')
  t.match(events[0], { action: 'agent.created', outcome: 'success', agent_id: res.json().agentId, metadata: { actorId: admin.agent.agentId, deploymentEnv: 'development' } })
})

t.test('a duplicate email is a 409 AGENT_ALREADY_EXISTS and creates nothing', async (t) => {
  const body = agentBody()
  t.equal((await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: body })).statusCode, 201)
  const again = await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: { ...body, owner: 'someone-else' } })

  assertProblem(t, again, 409, 'AGENT_ALREADY_EXISTS')
  t.equal(await countAgentsWithEmail(app, body.email as string), 1)
})

t.test('a duplicate email in another case is a 409 AGENT_ALREADY_EXISTS', async (t) => {
  const body = agentBody({ email: `Summarizer-${Date.now()}@Example.com` })
  t.equal((await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: body })).statusCode, 201)
  const again = await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: { ...body, email: (body.email as string).toLowerCase() } })
  const upper = await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: { ...body, email: (body.email as string).toUpperCase() } })

  assertProblem(t, again, 409, 'AGENT_ALREADY_EXISTS')
  assertProblem(t, upper, 409, 'AGENT_ALREADY_EXISTS')
  t.equal(await countAgentsWithEmail(app, body.email as string), 1)
})

t.test('a failed duplicate registration writes no agent.created event', async (t) => {
  const before = (await auditByActor(app, admin.agent.agentId)).filter((event) => event.action === 'agent.created').length
  const body = agentBody()
  await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: body })
  await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: body })
  const after = (await auditByActor(app, admin.agent.agentId)).filter((event) => event.action === 'agent.created').length
  t.equal(after - before, 1)
})

t.test('the email of a decommissioned agent stays reserved: 409 AGENT_ALREADY_EXISTS', async (t) => {
  const body = agentBody()
  const created = await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: body })
  t.equal((await app.inject({ method: 'DELETE', url: agentUrl(created.json().agentId), headers: admin.headers })).statusCode, 204)
  const again = await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: body })
  assertProblem(t, again, 409, 'AGENT_ALREADY_EXISTS')
})

t.test('without a token registration is a 401 with a bare Bearer challenge', async (t) => {
  const body = agentBody()
  const res = await app.inject({ method: 'POST', url: AGENTS, payload: body })
  assertProblem(t, res, 401, 'UNAUTHORIZED')
  t.equal(res.headers['www-authenticate'], `Bearer resource_metadata="${RESOURCE_METADATA}"`)
  t.equal(await countAgentsWithEmail(app, body.email as string), 0)
})

t.test('a caller without agents:write gets 403 insufficient_scope and nothing is created', async (t) => {
  const reader = await seedAgent(app, { capabilities: ['agents:read', 'docs:read'] })
  const body = agentBody()
  const res = await app.inject({ method: 'POST', url: AGENTS, headers: reader.headers, payload: body })

  assertProblem(t, res, 403, 'FORBIDDEN')
  t.match(res.headers['www-authenticate'], /^Bearer .*error="insufficient_scope"/)
  t.equal(await countAgentsWithEmail(app, body.email as string), 0)
  const denied = (await auditByActor(app, reader.agent.agentId)).filter((event) => event.action === 'access.denied')
  t.equal(denied.length, 1, 'the refusal is audited once')
  t.equal(denied[0]?.outcome, 'failure')
})

t.test('a token whose scope omits agents:write cannot register even if the agent could hold it', async (t) => {
  const narrow = await seedAgent(app, { capabilities: ['agents:read', 'agents:write'] }, 'agents:read')
  const res = await app.inject({ method: 'POST', url: AGENTS, headers: narrow.headers, payload: agentBody() })
  assertProblem(t, res, 403, 'FORBIDDEN')
})

t.test('a caller cannot grant a platform scope it does not hold: 403, nothing created, refusal audited', async (t) => {
  const writer = await seedAgent(app, { capabilities: ['agents:write', 'docs:read'] })
  const body = agentBody({ capabilities: ['docs:read', 'audit:read'] })
  const res = await app.inject({ method: 'POST', url: AGENTS, headers: writer.headers, payload: body })

  assertProblem(t, res, 403, 'FORBIDDEN')
  t.match(res.headers['www-authenticate'], /error="insufficient_scope"/, 'a 403 carries error="insufficient_scope" (API.md)')
  t.equal(await countAgentsWithEmail(app, body.email as string), 0)
  const denied = (await auditByActor(app, writer.agent.agentId)).filter((event) => event.action === 'access.denied')
  t.equal(denied.length, 1)
})

t.test('a caller may grant the platform scopes it holds and any non-platform capability', async (t) => {
  const writer = await seedAgent(app, { capabilities: ['agents:write', 'agents:read'] })
  const res = await app.inject({ method: 'POST', url: AGENTS, headers: writer.headers, payload: agentBody({ capabilities: ['agents:read', 'reports:generate'] }) })
  t.equal(res.statusCode, 201, res.body)
  t.same(res.json().capabilities, ['agents:read', 'reports:generate'])
})

for (const field of ['agentId', 'createdAt', 'updatedAt', 'status'] as const) {
  t.test(`mass assignment: ${field} on create is a 400 naming it and nothing is created`, async (t) => {
    const values = { agentId: '0b8c3f0e-7f6a-4c4e-9d1a-3f1b2c3d4e5f', createdAt: '2000-01-01T00:00:00.000Z', updatedAt: '2000-01-01T00:00:00.000Z', status: 'suspended' }
    const body = agentBody({ [field]: values[field] })
    const res = await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: body })

    assertValidationError(t, res, `body.${field}`)
    t.equal(await countAgentsWithEmail(app, body.email as string), 0)
    if (field === 'agentId') {
      const { rows } = await app.pg.query('SELECT 1 FROM agents WHERE agent_id = $1', [values.agentId])
      t.equal(rows.length, 0, 'no agent under the requested id')
    }
  })
}

for (const field of ['email', 'agentType', 'version', 'capabilities', 'owner', 'deploymentEnv']) {
  t.test(`a registration without ${field} is a 400 naming it`, async (t) => {
    const body = agentBody()
    delete body[field]
    const res = await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: body })
    assertValidationError(t, res, `body.${field}`)
  })
}

t.test('empty capabilities, a bad scope shape, a bad semver and a bad email are 400s', async (t) => {
  const cases: Array<[string | RegExp, Record<string, unknown>]> = [
    ['body.capabilities', { capabilities: [] }],
    [/^body\.capabilities/, { capabilities: ['not-a-scope'] }],
    [/^body\.capabilities/, { capabilities: ['docs:read', 'docs:read'] }],
    ['body.version', { version: '1.0' }],
    ['body.version', { version: 'v1.0.0' }],
    ['body.email', { email: 'not-an-email' }],
    ['body.owner', { owner: '' }],
    ['body.owner', { owner: 'x'.repeat(129) }]
  ]
  for (const [field, override] of cases) {
    const body = agentBody(override)
    const res = await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: body })
    assertValidationError(t, res, field)
    t.equal(await countAgentsWithEmail(app, body.email as string), 0)
  }
})

t.test('an owner of exactly 128 characters is accepted', async (t) => {
  const res = await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: agentBody({ owner: 'o'.repeat(128) }) })
  t.equal(res.statusCode, 201, res.body)
})

t.test('every agentType and deploymentEnv of the contract is accepted', async (t) => {
  const types = ['screener', 'classifier', 'orchestrator', 'extractor', 'summarizer', 'router', 'monitor', 'custom']
  const envs = ['development', 'staging', 'production']
  for (const [index, agentType] of types.entries()) {
    const deploymentEnv = envs[index % envs.length]
    const res = await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: agentBody({ agentType, deploymentEnv }) })
    t.equal(res.statusCode, 201, `${agentType}/${deploymentEnv}: ${res.body}`)
    t.match(res.json(), { agentType, deploymentEnv })
  }
})

t.test('free tier: past MAX_AGENTS_PER_OWNER registration is a 403 FREE_TIER_LIMIT_EXCEEDED, audited', async (t) => {
  const limited = await build(t, { env: { MAX_AGENTS_PER_OWNER: '2' } })
  const boss = await seedAdmin(limited)
  const create = (owner: string) => limited.inject({ method: 'POST', url: AGENTS, headers: boss.headers, payload: agentBody({ owner }) })

  t.equal((await create('acme')).statusCode, 201)
  t.equal((await create('acme')).statusCode, 201)
  const third = agentBody({ owner: 'acme' })
  const res = await limited.inject({ method: 'POST', url: AGENTS, headers: boss.headers, payload: third })
  assertProblem(t, res, 403, 'FREE_TIER_LIMIT_EXCEEDED')
  t.equal(await countAgentsWithEmail(limited, third.email as string), 0, 'the third agent was not created')
  const { rows } = await limited.pg.query<{ count: number }>("SELECT count(*)::int AS count FROM agents WHERE owner = 'acme'")
  t.equal(rows[0].count, 2)

  const denied = (await auditByActor(limited, boss.agent.agentId)).filter((event) => event.action === 'access.denied')
  t.equal(denied.length, 1, 'the limit breach is audited once')
  t.equal((await create('other-owner')).statusCode, 201, 'the limit is per owner')
})

t.test('free tier: MAX_AGENTS_PER_OWNER=0 turns the limit off', async (t) => {
  const unlimited = await build(t, { env: { MAX_AGENTS_PER_OWNER: '0' } })
  const boss = await seedAdmin(unlimited)
  for (let index = 0; index < 3; index++) {
    const res = await unlimited.inject({ method: 'POST', url: AGENTS, headers: boss.headers, payload: agentBody({ owner: 'acme' }) })
    t.equal(res.statusCode, 201, res.body)
  }
})
