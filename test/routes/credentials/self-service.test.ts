import t from 'tap'
import { build, mintDelegatedToken, mintToken, seedAdmin } from '../../helper.js'
import { assertProblem } from '../agents/support.js'
import {
  accessToken, auditRows, credentialsUrl, credentialUrl, registerClient, requestToken, type Client
} from '../oauth/support.js'

const app = await build(t)
const admin = await seedAdmin(app)

const as = (token: string) => ({ authorization: `Bearer ${token}` })

/** The four credential operations on `agentId`, as the holder of `token`. */
function operations (token: string, agentId: string, credentialId: string) {
  return {
    generate: () => app.inject({ method: 'POST', url: credentialsUrl(agentId), headers: as(token) }),
    list: () => app.inject({ method: 'GET', url: credentialsUrl(agentId), headers: as(token) }),
    rotate: () => app.inject({ method: 'POST', url: `${credentialUrl(agentId, credentialId)}/rotate`, headers: as(token) }),
    revoke: () => app.inject({ method: 'DELETE', url: credentialUrl(agentId, credentialId), headers: as(token) })
  }
}

async function credentialRows (agentId: string) {
  const { rows } = await app.pg.query('SELECT credential_id, status, secret_hash FROM credentials WHERE client_id = $1 ORDER BY credential_id', [agentId])
  return rows
}

t.test('an agent manages its own credentials with its own token, without any credentials:* scope', async (t) => {
  const agent = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })
  const token = await accessToken(app, agent)

  const generated = await app.inject({ method: 'POST', url: credentialsUrl(agent.agentId), headers: as(token) })
  t.equal(generated.statusCode, 201, generated.body)
  const second: Client = { agentId: agent.agentId, credentialId: generated.json().credentialId, secret: generated.json().clientSecret }
  const own = operations(token, agent.agentId, second.credentialId)

  const listed = await own.list()
  t.equal(listed.statusCode, 200, listed.body)
  t.equal(listed.json().data.length, 2)

  const rotated = await own.rotate()
  t.equal(rotated.statusCode, 200, rotated.body)
  t.equal((await requestToken(app, { agentId: agent.agentId, secret: rotated.json().clientSecret })).statusCode, 200, 'the rotated secret works')

  const revoked = await own.revoke()
  t.equal(revoked.statusCode, 204, revoked.body)
  t.equal((await requestToken(app, { agentId: agent.agentId, secret: rotated.json().clientSecret })).statusCode, 401, 'the revoked secret does not')

  const events = await auditRows(app, 'credential.rotated', { metadataKey: 'credentialId', metadataValue: second.credentialId })
  t.equal(events[0]?.metadata.actorId, agent.agentId, 'the agent is recorded as the actor')
})

t.test('a delegated token (with an act claim) grants no self-service: 404 for every operation and nothing changes', async (t) => {
  const agent = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })
  const actor = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })
  const delegated = await mintDelegatedToken(app, agent.agentId, actor.agentId, { scope: 'docs:read' })
  t.equal((await app.inject({ method: 'GET', url: '/api/v1/agents?limit=1', headers: { authorization: `Bearer ${delegated}` } })).statusCode, 403, 'the token authenticates (403, not 401): it is refused by the policy only')
  const before = await credentialRows(agent.agentId)

  for (const [name, run] of Object.entries(operations(delegated, agent.agentId, agent.credentialId))) {
    const res = await run()
    t.test(`delegated ${name}`, async (t) => { assertProblem(t, res, 404, 'AGENT_NOT_FOUND') })
  }
  t.same(await credentialRows(agent.agentId), before, 'no credential created, rotated or revoked')
  t.equal((await requestToken(app, agent)).statusCode, 200, 'the secret still works')

  const control = await mintToken(app, agent.agentId, { scope: 'docs:read' })
  t.equal((await operations(control, agent.agentId, agent.credentialId).list()).statusCode, 200, 'control: the same token without act may list')
})

t.test('an agent asking about another agent\'s credentials gets 404 AGENT_NOT_FOUND and changes nothing', async (t) => {
  const agent = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })
  const other = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })
  const token = await accessToken(app, agent)
  const before = await credentialRows(other.agentId)

  for (const run of Object.values(operations(token, other.agentId, other.credentialId))) {
    assertProblem(t, await run(), 404, 'AGENT_NOT_FOUND')
  }
  t.same(await credentialRows(other.agentId), before)
  t.equal((await requestToken(app, other)).statusCode, 200, 'the other agent\'s secret still works')
  const denied = await auditRows(app, 'access.denied', { agentId: other.agentId })
  t.equal(denied.length, 4, 'each refusal is audited once')
})

t.test('an agent cannot reach another agent\'s credential through its own path either', async (t) => {
  const agent = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })
  const other = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })
  const own = operations(await accessToken(app, agent), agent.agentId, other.credentialId)
  assertProblem(t, await own.rotate(), 404, 'CREDENTIAL_NOT_FOUND')
  assertProblem(t, await own.revoke(), 404, 'CREDENTIAL_NOT_FOUND')
  t.equal((await requestToken(app, other)).statusCode, 200)
})

t.test('self-service stops with suspension: the suspended agent\'s token is refused', async (t) => {
  const agent = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })
  const token = await accessToken(app, agent)
  const suspended = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.agentId}`, headers: admin.headers, payload: { status: 'suspended' } })
  t.equal(suspended.statusCode, 200, suspended.body)
  t.equal((await operations(token, agent.agentId, agent.credentialId).generate()).statusCode, 401)
})

t.test('credentials:write without a read scope gets 404 for generate, rotate and revoke of another agent, as for list', async (t) => {
  // API.md: a caller that may not read the target gets 404 for every operation on it
  const writer = await registerClient(app, admin.headers, { capabilities: ['credentials:write', 'docs:read'] })
  const other = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })
  const before = await credentialRows(other.agentId)
  for (const [name, run] of Object.entries(operations(await accessToken(app, writer), other.agentId, other.credentialId))) {
    const res = await run()
    t.test(`credentials:write only: ${name}`, async (t) => { assertProblem(t, res, 404, 'AGENT_NOT_FOUND') })
  }
  t.same(await credentialRows(other.agentId), before, 'no credential created, rotated or revoked')
  const reasons = (await auditRows(app, 'access.denied', { agentId: other.agentId })).map((event) => event.metadata.reason)
  t.same(reasons, ['not_visible', 'not_visible', 'not_visible', 'not_visible'], 'each refusal audited once, as not visible')
})
