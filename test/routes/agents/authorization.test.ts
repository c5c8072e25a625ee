import { randomUUID } from 'node:crypto'
import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { agentBody, build, mintToken, seedAdmin, seedAgent } from '../../helper.js'
import { insertCredential, listCredentials } from '../../../repositories/credentials.js'
import { AGENTS, agentRow, agentUrl, assertProblem, auditByActor, auditOf, bearer, countAgentsWithEmail, type Tap } from './support.js'

const app = await build(t)
const admin = await seedAdmin(app)

/** Agent A holds no platform scope; agent B is the victim. */
async function pair () {
  const attacker = await seedAgent(app, { capabilities: ['docs:read', 'files:write'] })
  const victim = await seedAgent(app, { capabilities: ['docs:read'] })
  return { attacker, victim }
}

async function deniedCount (actorId: string): Promise<number> {
  return (await auditByActor(app, actorId)).filter((event) => event.action === 'access.denied').length
}

/**
 * Runs `request` and asserts it wrote exactly one access.denied event by `actorId`, about `targetId`
 * (null for a collection, which has no target agent: then the event may name none or the caller).
 */
async function assertOneDenial (t: Tap, actorId: string, targetId: string | null, request: () => Promise<LightMyRequestResponse>): Promise<LightMyRequestResponse> {
  const before = (await auditByActor(app, actorId)).filter((event) => event.action === 'access.denied').map((event) => event.event_id)
  const res = await request()
  const added = (await auditByActor(app, actorId)).filter((event) => event.action === 'access.denied' && !before.includes(event.event_id))
  t.equal(added.length, 1, 'exactly one access.denied event')
  t.match(added[0], { outcome: 'failure', metadata: { actorId } })
  if (targetId === null) t.ok(added[0]?.agent_id === null || added[0]?.agent_id === actorId, 'a collection refusal names no other agent')
  else t.equal(added[0]?.agent_id, targetId, 'the event names the target')
  return res
}

t.test('BOLA: agent A cannot read agent B: 404 AGENT_NOT_FOUND, audited as access.denied', async (t) => {
  const { attacker, victim } = await pair()
  const res = await assertOneDenial(t, attacker.agent.agentId, victim.agent.agentId,
    () => app.inject({ method: 'GET', url: agentUrl(victim.agent.agentId), headers: attacker.headers }))
  assertProblem(t, res, 404, 'AGENT_NOT_FOUND')
  t.notOk(res.body.includes(victim.agent.email))
})

t.test('BOLA: spelling B\'s id in upper case does not get A past the check', async (t) => {
  const { attacker, victim } = await pair()
  const res = await app.inject({ method: 'GET', url: agentUrl(victim.agent.agentId.toUpperCase()), headers: attacker.headers })
  assertProblem(t, res, 404, 'AGENT_NOT_FOUND')
})

t.test('BOLA: agent A cannot patch agent B: 404, B unchanged, audited', async (t) => {
  const { attacker, victim } = await pair()
  const before = await agentRow(app, victim.agent.agentId)
  for (const payload of [{ version: '6.6.6' }, { status: 'suspended' }, { capabilities: ['files:write'] }, { owner: 'attacker' }]) {
    const res = await assertOneDenial(t, attacker.agent.agentId, victim.agent.agentId,
      () => app.inject({ method: 'PATCH', url: agentUrl(victim.agent.agentId), headers: attacker.headers, payload }))
    assertProblem(t, res, 404, 'AGENT_NOT_FOUND')
  }
  t.same(await agentRow(app, victim.agent.agentId), before, 'nothing changed')
  t.equal((await app.inject({ method: 'GET', url: agentUrl(victim.agent.agentId), headers: victim.headers })).statusCode, 200, 'B\'s token still works')
})

t.test('BOLA: agent A cannot decommission agent B: 404, B active, credentials untouched, audited', async (t) => {
  const { attacker, victim } = await pair()
  const credentialId = randomUUID()
  await insertCredential(app.pg, { credentialId, clientId: victim.agent.agentId, secretHash: 'placeholder', expiresAt: null })
  const res = await assertOneDenial(t, attacker.agent.agentId, victim.agent.agentId,
    () => app.inject({ method: 'DELETE', url: agentUrl(victim.agent.agentId), headers: attacker.headers }))
  assertProblem(t, res, 404, 'AGENT_NOT_FOUND')
  t.equal((await agentRow(app, victim.agent.agentId))?.status, 'active')
  t.equal((await listCredentials(app.pg, victim.agent.agentId)).find((credential) => credential.credentialId === credentialId)?.status, 'active')
  t.same((await auditOf(app, victim.agent.agentId)).filter((event) => event.outcome === 'success'), [], 'no state change about B')
})

t.test('BOLA: agent A cannot list agents: 403 insufficient_scope, audited', async (t) => {
  const { attacker } = await pair()
  const res = await assertOneDenial(t, attacker.agent.agentId, null,
    () => app.inject({ method: 'GET', url: AGENTS, headers: attacker.headers }))
  assertProblem(t, res, 403, 'FORBIDDEN')
  t.match(res.headers['www-authenticate'], /^Bearer .*error="insufficient_scope"/)
  t.notOk('data' in res.json())
})

t.test('BOLA: agent A cannot register agents: 403, nothing created, audited', async (t) => {
  const { attacker } = await pair()
  const body = agentBody()
  const before = await deniedCount(attacker.agent.agentId)
  const res = await app.inject({ method: 'POST', url: AGENTS, headers: attacker.headers, payload: body })
  assertProblem(t, res, 403, 'FORBIDDEN')
  t.equal(await countAgentsWithEmail(app, body.email as string), 0)
  t.equal(await deniedCount(attacker.agent.agentId) - before, 1)
})

t.test('a caller that may read but not write gets 403 (not 404) on PATCH and DELETE of another agent', async (t) => {
  const reader = await seedAgent(app, { capabilities: ['agents:read'] })
  const { victim } = await pair()
  t.equal((await app.inject({ method: 'GET', url: agentUrl(victim.agent.agentId), headers: reader.headers })).statusCode, 200)
  const patch = await assertOneDenial(t, reader.agent.agentId, victim.agent.agentId,
    () => app.inject({ method: 'PATCH', url: agentUrl(victim.agent.agentId), headers: reader.headers, payload: { version: '2.0.0' } }))
  assertProblem(t, patch, 403, 'FORBIDDEN')
  t.match(patch.headers['www-authenticate'], /error="insufficient_scope"/)
  const remove = await assertOneDenial(t, reader.agent.agentId, victim.agent.agentId,
    () => app.inject({ method: 'DELETE', url: agentUrl(victim.agent.agentId), headers: reader.headers }))
  assertProblem(t, remove, 403, 'FORBIDDEN')
  t.equal((await agentRow(app, victim.agent.agentId))?.status, 'active')
})

t.test('a token\'s scope beyond the agent\'s capabilities grants nothing', async (t) => {
  const { agent } = await seedAgent(app, { capabilities: ['docs:read'] })
  const token = await mintToken(app, agent.agentId, { scope: 'docs:read agents:read agents:write' })
  assertProblem(t, await app.inject({ method: 'GET', url: AGENTS, headers: bearer(token) }), 403, 'FORBIDDEN')
  const body = agentBody()
  assertProblem(t, await app.inject({ method: 'POST', url: AGENTS, headers: bearer(token), payload: body }), 403, 'FORBIDDEN')
  t.equal(await countAgentsWithEmail(app, body.email as string), 0)
})

t.test('capabilities the token\'s scope omits grant nothing', async (t) => {
  const { agent } = await seedAgent(app, { capabilities: ['docs:read', 'agents:read'] })
  const token = await mintToken(app, agent.agentId, { scope: 'docs:read' })
  assertProblem(t, await app.inject({ method: 'GET', url: AGENTS, headers: bearer(token) }), 403, 'FORBIDDEN')
})

t.test('narrowing an agent\'s capabilities narrows its live tokens on the next request', async (t) => {
  const reader = await seedAgent(app, { capabilities: ['agents:read', 'docs:read'] })
  t.equal((await app.inject({ method: 'GET', url: AGENTS, headers: reader.headers })).statusCode, 200, 'the token lists before')
  const narrowed = await app.inject({ method: 'PATCH', url: agentUrl(reader.agent.agentId), headers: admin.headers, payload: { capabilities: ['docs:read'] } })
  t.equal(narrowed.statusCode, 200, narrowed.body)
  assertProblem(t, await app.inject({ method: 'GET', url: AGENTS, headers: reader.headers }), 403, 'FORBIDDEN')
  t.equal((await app.inject({ method: 'GET', url: agentUrl(reader.agent.agentId), headers: reader.headers })).statusCode, 200, 'self-read still works')
})

t.test('a caller that may write but not read another agent gets 404 for PATCH and DELETE, as for GET; nothing changes', async (t) => {
  // API.md: a caller that may not read the target gets 404 for every operation on it, as if it did not exist
  const writer = await seedAgent(app, { capabilities: ['agents:write', 'docs:read'] })
  const { victim } = await pair()
  const before = await agentRow(app, victim.agent.agentId)
  const attempts: Array<() => Promise<LightMyRequestResponse>> = [
    () => app.inject({ method: 'GET', url: agentUrl(victim.agent.agentId), headers: writer.headers }),
    () => app.inject({ method: 'PATCH', url: agentUrl(victim.agent.agentId), headers: writer.headers, payload: { version: '2.0.0' } }),
    () => app.inject({ method: 'PATCH', url: agentUrl(victim.agent.agentId), headers: writer.headers, payload: { status: 'suspended' } }),
    () => app.inject({ method: 'DELETE', url: agentUrl(victim.agent.agentId), headers: writer.headers })
  ]
  for (const attempt of attempts) {
    const res = await assertOneDenial(t, writer.agent.agentId, victim.agent.agentId, attempt)
    const body = assertProblem(t, res, 404, 'AGENT_NOT_FOUND')
    t.notOk(JSON.stringify(body).includes(victim.agent.email), 'nothing of the agent leaks')
  }
  t.same(await agentRow(app, victim.agent.agentId), before, 'nothing changed')
  const reasons = (await auditByActor(app, writer.agent.agentId)).filter((event) => event.action === 'access.denied').map((event) => event.metadata.reason)
  t.same(reasons, ['not_visible', 'not_visible', 'not_visible', 'not_visible'])
  const own = await app.inject({ method: 'PATCH', url: agentUrl(writer.agent.agentId), headers: writer.headers, payload: { version: '1.0.1' } })
  t.equal(own.statusCode, 200, 'its own agent it sees, so agents:write applies there')
})
