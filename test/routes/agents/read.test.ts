import t from 'tap'
import { build, mintDelegatedToken, RESOURCE_METADATA, seedAdmin, seedAgent } from '../../helper.js'
import { agentUrl, assertProblem, assertValidationError, auditByActor, bearer, UNKNOWN_AGENT } from './support.js'

const app = await build(t)
const admin = await seedAdmin(app)

t.test('an agents:read caller reads an agent: 200 with exactly the Agent fields', async (t) => {
  const { agent } = await seedAgent(app, { agentType: 'extractor', deploymentEnv: 'production', capabilities: ['docs:read', 'files:write'] })
  const reader = await seedAgent(app, { capabilities: ['agents:read'] })
  const res = await app.inject({ method: 'GET', url: agentUrl(agent.agentId), headers: reader.headers })

  t.equal(res.statusCode, 200, res.body)
  t.match(res.headers['content-type'], /^application\/json/)
  t.same(res.json(), agent)
  t.same(Object.keys(res.json()).sort(), ['agentId', 'agentType', 'audiences', 'authMethods', 'capabilities', 'clientIdUrl', 'createdAt', 'deploymentEnv', 'dpopBound', 'email', 'federatedSubjects', 'mayAct', 'owner', 'status', 'updatedAt', 'version'])
})

t.test('an agent reads itself without agents:read (self-service)', async (t) => {
  const self = await seedAgent(app, { capabilities: ['docs:read'] })
  const res = await app.inject({ method: 'GET', url: agentUrl(self.agent.agentId), headers: self.headers })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().agentId, self.agent.agentId)
})

t.test('self-service also works when the path spells the agentId in upper case', async (t) => {
  const self = await seedAgent(app, { capabilities: ['docs:read'] })
  const res = await app.inject({ method: 'GET', url: agentUrl(self.agent.agentId.toUpperCase()), headers: self.headers })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().agentId, self.agent.agentId)
})

t.test('a delegated token (act claim) never grants self-service: 404 as if the agent did not exist', async (t) => {
  const self = await seedAgent(app, { capabilities: ['docs:read'] })
  const actor = await seedAgent(app, { capabilities: ['docs:read'] })
  const token = await mintDelegatedToken(app, self.agent.agentId, actor.agent.agentId, { scope: 'docs:read' })
  const res = await app.inject({ method: 'GET', url: agentUrl(self.agent.agentId), headers: bearer(token) })
  assertProblem(t, res, 404, 'AGENT_NOT_FOUND')
})

t.test('an unknown well-formed agentId is a 404 AGENT_NOT_FOUND', async (t) => {
  const res = await app.inject({ method: 'GET', url: agentUrl(UNKNOWN_AGENT), headers: admin.headers })
  const body = assertProblem(t, res, 404, 'AGENT_NOT_FOUND')
  t.notOk('errors' in body, 'a 404 lists no validation errors')
})

t.test('a decommissioned agent still reads back, with its status', async (t) => {
  const { agent } = await seedAgent(app)
  await app.pg.query("UPDATE agents SET status = 'decommissioned' WHERE agent_id = $1", [agent.agentId])
  const res = await app.inject({ method: 'GET', url: agentUrl(agent.agentId), headers: admin.headers })
  t.equal(res.statusCode, 200)
  t.equal(res.json().status, 'decommissioned')
})

for (const bad of ['not-a-uuid', '12345', '6f1c2a57-9a1e-4d3b-8c55-2b9f3e0a7d4', '6f1c2a57-9a1e-4d3b-8c55-2b9f3e0a7d41x', 'zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz']) {
  t.test(`a malformed agentId (${bad}) is a 400 VALIDATION_ERROR naming params.agentId`, async (t) => {
    const res = await app.inject({ method: 'GET', url: agentUrl(bad), headers: admin.headers })
    assertValidationError(t, res, 'params.agentId')
  })
}

t.test('reading without a token is a 401 with a bare Bearer challenge', async (t) => {
  const { agent } = await seedAgent(app)
  const res = await app.inject({ method: 'GET', url: agentUrl(agent.agentId) })
  assertProblem(t, res, 401, 'UNAUTHORIZED')
  t.equal(res.headers['www-authenticate'], `Bearer resource_metadata="${RESOURCE_METADATA}"`)
  t.notOk(res.body.includes(agent.email), 'nothing about the agent leaks')
})

t.test('a caller without agents:read reading another agent gets the same 404 as for a missing one, audited', async (t) => {
  const target = await seedAgent(app)
  const caller = await seedAgent(app, { capabilities: ['docs:read'] })
  const hidden = await app.inject({ method: 'GET', url: agentUrl(target.agent.agentId), headers: caller.headers })
  const missing = await app.inject({ method: 'GET', url: agentUrl(UNKNOWN_AGENT), headers: caller.headers })

  const hiddenBody = assertProblem(t, hidden, 404, 'AGENT_NOT_FOUND')
  const missingBody = assertProblem(t, missing, 404, 'AGENT_NOT_FOUND')
  t.equal(hiddenBody.type, missingBody.type)
  t.equal(hiddenBody.title, missingBody.title)
  t.notOk(hidden.body.includes(target.agent.email), 'the hidden agent does not leak')
  const denied = (await auditByActor(app, caller.agent.agentId)).filter((event) => event.action === 'access.denied')
  t.equal(denied.length, 2, 'each refusal is audited once')
  t.ok(denied.some((event) => event.agent_id === target.agent.agentId), 'the refusal names the target')
})
