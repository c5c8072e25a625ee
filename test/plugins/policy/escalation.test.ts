import t from 'tap'
import { agentBody, build, mintDelegatedToken, mintToken, seedAdmin, seedAgent } from '../../helper.js'
import { assertProblem } from '../../routes/agents/support.js'
import { credentialsUrl, INTROSPECT, oauthPost, requestToken } from '../../routes/oauth/support.js'

/** Scope escalation: nobody obtains, grants or keeps a scope beyond what its agent holds now. */
const app = await build(t, { env: { RATE_LIMIT_TOKEN_PER_CLIENT: '0' } })
const admin = await seedAdmin(app)

async function capabilitiesOf (agentId: string): Promise<string[]> {
  return (await app.pg.query('SELECT capabilities FROM agents WHERE agent_id = $1', [agentId])).rows[0].capabilities
}

async function denials (actorId: string, reason: string): Promise<number> {
  return (await app.pg.query("SELECT count(*)::int AS n FROM audit_events WHERE action = 'access.denied' AND metadata->>'actorId' = $1 AND metadata->>'reason' = $2", [actorId, reason])).rows[0].n
}

t.test('asking the token endpoint for a scope outside the capabilities: invalid_scope, no token, audited', async (t) => {
  const created = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: admin.headers, payload: agentBody({ capabilities: ['docs:read'] }) })
  const agentId = created.json().agentId
  const secret = (await app.inject({ method: 'POST', url: credentialsUrl(agentId), headers: admin.headers })).json().clientSecret
  for (const scope of ['agents:write', 'docs:read agents:write', 'audit:read', 'docs:*', 'DOCS:READ']) {
    const res = await requestToken(app, { agentId, secret }, { fields: { scope } })
    t.equal(res.statusCode, 400, scope)
    t.equal(res.json().error, 'invalid_scope')
    t.notOk('access_token' in res.json())
  }
  t.equal(await denials(agentId, 'invalid_scope'), 5, 'each attempt audited')
  const ok = await requestToken(app, { agentId, secret }, { fields: { scope: 'docs:read' } })
  t.equal(ok.json().scope, 'docs:read', 'the held scope is granted')
})

t.test('PATCHing its own capabilities without agents:write: 403, unchanged, audited', async (t) => {
  const self = await seedAgent(app, { capabilities: ['docs:read', 'agents:read'] })
  const res = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${self.agent.agentId}`, headers: self.headers, payload: { capabilities: ['docs:read', 'agents:read', 'agents:write'] } })
  assertProblem(t, res, 403, 'FORBIDDEN')
  t.same(await capabilitiesOf(self.agent.agentId), ['docs:read', 'agents:read'])
  t.equal(await denials(self.agent.agentId, 'insufficient_scope'), 1)
  const bare = await seedAgent(app, { capabilities: ['docs:read'] })
  assertProblem(t, await app.inject({ method: 'PATCH', url: `/api/v1/agents/${bare.agent.agentId}`, headers: bare.headers, payload: { capabilities: ['agents:write'] } }), 403, 'FORBIDDEN')
  t.same(await capabilitiesOf(bare.agent.agentId), ['docs:read'], 'an agent with no scope at all: its own PATCH is 403 too (it may see itself)')
})

t.test('an agents:write holder cannot grant platform scopes it does not hold, to itself, another agent or a new one', async (t) => {
  const writer = await seedAgent(app, { capabilities: ['agents:read', 'agents:write'] })
  const other = await seedAgent(app, { capabilities: ['docs:read'] })
  for (const [url, method, payload] of [
    [`/api/v1/agents/${writer.agent.agentId}`, 'PATCH', { capabilities: ['agents:read', 'agents:write', 'audit:read'] }],
    [`/api/v1/agents/${other.agent.agentId}`, 'PATCH', { capabilities: ['docs:read', 'credentials:write'] }],
    ['/api/v1/agents', 'POST', agentBody({ capabilities: ['tokens:read'] })]
  ] as const) {
    const res = await app.inject({ method, url, headers: writer.headers, payload })
    assertProblem(t, res, 403, 'FORBIDDEN')
    t.match(res.headers['www-authenticate'], /insufficient_scope/)
  }
  t.same(await capabilitiesOf(writer.agent.agentId), ['agents:read', 'agents:write'])
  t.same(await capabilitiesOf(other.agent.agentId), ['docs:read'])
  t.equal(await denials(writer.agent.agentId, 'ungrantable_scope'), 3)
  const fine = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${other.agent.agentId}`, headers: writer.headers, payload: { capabilities: ['docs:read', 'agents:read', 'custom:thing'] } })
  t.equal(fine.statusCode, 200, 'scopes it holds, and non-platform scopes, it may grant')
})

t.test('a token minted wider than its agent\'s capabilities is narrowed to them', async (t) => {
  const { agent } = await seedAgent(app, { capabilities: ['docs:read', 'tokens:read'] })
  const token = await mintToken(app, agent.agentId, { scope: 'docs:read tokens:read agents:write audit:read' })
  assertProblem(t, await app.inject({ method: 'GET', url: '/api/v1/audit', headers: { authorization: `Bearer ${token}` } }), 403, 'FORBIDDEN')
  const answer = (await oauthPost(app, INTROSPECT, { fields: { token }, headers: admin.headers })).json()
  t.equal(answer.scope, 'docs:read tokens:read', 'introspection reports the effective scope')
})

t.test('narrowing capabilities applies to live tokens on the next request, on every instance', async (t) => {
  const other = await build(t, { databaseUrl: app.databaseUrl })
  const auditor = await seedAgent(app, { capabilities: ['audit:read', 'agents:read'] })
  t.equal((await other.inject({ method: 'GET', url: '/api/v1/audit?limit=1', headers: auditor.headers })).statusCode, 200)
  const narrowed = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${auditor.agent.agentId}`, headers: admin.headers, payload: { capabilities: ['agents:read'] } })
  t.equal(narrowed.statusCode, 200)
  assertProblem(t, await other.inject({ method: 'GET', url: '/api/v1/audit?limit=1', headers: auditor.headers }), 403, 'FORBIDDEN')
  t.equal((await other.inject({ method: 'GET', url: '/api/v1/agents?limit=1', headers: auditor.headers })).statusCode, 200, 'what it still holds keeps working')
})

t.test('a delegated token (act claim) gets no self-service over its subject', async (t) => {
  const { agent } = await seedAgent(app, { capabilities: ['docs:read'] })
  const delegated = await mintDelegatedToken(app, agent.agentId, admin.agent.agentId, { scope: 'docs:read' })
  assertProblem(t, await app.inject({ method: 'GET', url: `/api/v1/agents/${agent.agentId}`, headers: { authorization: `Bearer ${delegated}` } }), 404, 'AGENT_NOT_FOUND')
  assertProblem(t, await app.inject({ method: 'POST', url: credentialsUrl(agent.agentId), headers: { authorization: `Bearer ${delegated}` } }), 404, 'AGENT_NOT_FOUND')
})
