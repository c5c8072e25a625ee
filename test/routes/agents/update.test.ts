import t from 'tap'
import { randomUUID } from 'node:crypto'
import { agentBody, build, mintToken, PLATFORM_SCOPES, RESOURCE_METADATA, seedAdmin, seedAgent, type TestApp } from '../../helper.js'
import { insertAgent } from '../../../repositories/agents.js'
import { insertCredential } from '../../../repositories/credentials.js'
import { agentRow, agentUrl, assertProblem, assertValidationError, auditByActor, auditOf, bearer, UNKNOWN_AGENT } from './support.js'

const app = await build(t)
const admin = await seedAdmin(app)

const patch = (target: TestApp, agentId: string, headers: Record<string, string>, payload: unknown) =>
  target.inject({ method: 'PATCH', url: agentUrl(agentId), headers, payload: payload as Record<string, unknown> })

t.test('PATCH changes the mutable fields: 200 with the new agent, stored, updatedAt advanced', async (t) => {
  const { agent } = await seedAgent(app)
  await new Promise((resolve) => setTimeout(resolve, 5))
  const changes = { version: '3.0.0', owner: 'team-b', deploymentEnv: 'production', agentType: 'router', capabilities: ['docs:read', 'docs:write'] }
  const res = await patch(app, agent.agentId, admin.headers, changes)

  t.equal(res.statusCode, 200, res.body)
  const updated = res.json()
  t.match(updated, { ...changes, agentId: agent.agentId, email: agent.email, status: 'active', createdAt: agent.createdAt })
  t.ok(Date.parse(updated.updatedAt) > Date.parse(agent.updatedAt), 'updatedAt moved forward')
  const read = await app.inject({ method: 'GET', url: agentUrl(agent.agentId), headers: admin.headers })
  t.same(read.json(), updated, 'the change is stored')
})

t.test('a field update writes exactly one agent.updated event naming the target, the caller and the changed fields', async (t) => {
  const { agent } = await seedAgent(app)
  t.equal((await patch(app, agent.agentId, admin.headers, { version: '1.2.3', owner: agent.owner })).statusCode, 200)
  const events = await auditOf(app, agent.agentId)
  t.equal(events.length, 1)
  t.match(events[0], { action: 'agent.updated', outcome: 'success', agent_id: agent.agentId, metadata: { actorId: admin.agent.agentId } })
  t.same(events[0].metadata.changed, ['version'], 'only the field that really changed')
})

t.test('email is immutable: PATCH email is a 400 and the agent is unchanged', async (t) => {
  const { agent } = await seedAgent(app)
  const res = await patch(app, agent.agentId, admin.headers, { email: 'new-address@example.com' })
  assertValidationError(t, res, 'body.email')
  t.equal((await agentRow(app, agent.agentId))?.email, agent.email)
})

for (const [field, value] of [['agentId', UNKNOWN_AGENT], ['createdAt', '2000-01-01T00:00:00.000Z'], ['updatedAt', '2000-01-01T00:00:00.000Z'], ['role', 'admin']] as const) {
  t.test(`PATCH ${field} (immutable or unknown) is a 400 and nothing changes`, async (t) => {
    const { agent } = await seedAgent(app)
    const before = await agentRow(app, agent.agentId)
    const res = await patch(app, agent.agentId, admin.headers, { version: '9.9.9', [field]: value })
    assertValidationError(t, res, `body.${field}`)
    t.same(await agentRow(app, agent.agentId), before)
  })
}

t.test('an empty PATCH body {} is a 400 VALIDATION_ERROR', async (t) => {
  const { agent } = await seedAgent(app)
  assertValidationError(t, await patch(app, agent.agentId, admin.headers, {}))
})

t.test('a PATCH with no body at all is a 400, not a 500', async (t) => {
  const { agent } = await seedAgent(app)
  const res = await app.inject({ method: 'PATCH', url: agentUrl(agent.agentId), headers: admin.headers })
  assertProblem(t, res, 400)
})

t.test('a PATCH body that is JSON null or an array is a 400', async (t) => {
  const { agent } = await seedAgent(app)
  for (const payload of ['null', '[]', '"active"', '42']) {
    const res = await app.inject({ method: 'PATCH', url: agentUrl(agent.agentId), headers: { ...admin.headers, 'content-type': 'application/json' }, payload })
    assertProblem(t, res, 400, 'VALIDATION_ERROR')
  }
})

t.test('bad values in a PATCH are 400s naming the field', async (t) => {
  const { agent } = await seedAgent(app)
  for (const [field, value] of [['status', 'deleted'], ['version', '1'], ['capabilities', []], ['deploymentEnv', 'qa'], ['agentType', 'robot'], ['owner', '']] as const) {
    assertValidationError(t, await patch(app, agent.agentId, admin.headers, { [field]: value }), `body.${field}`)
  }
})

t.test('PATCH of an unknown well-formed agentId is a 404 AGENT_NOT_FOUND', async (t) => {
  assertProblem(t, await patch(app, UNKNOWN_AGENT, admin.headers, { version: '2.0.0' }), 404, 'AGENT_NOT_FOUND')
})

t.test('PATCH without a token is a 401 and changes nothing', async (t) => {
  const { agent } = await seedAgent(app)
  const res = await app.inject({ method: 'PATCH', url: agentUrl(agent.agentId), payload: { version: '2.0.0' } })
  assertProblem(t, res, 401, 'UNAUTHORIZED')
  t.equal(res.headers['www-authenticate'], `Bearer resource_metadata="${RESOURCE_METADATA}"`)
  t.equal((await agentRow(app, agent.agentId))?.version, agent.version)
})

t.test('a caller that can read but not write gets 403 insufficient_scope and nothing changes', async (t) => {
  const { agent } = await seedAgent(app)
  const reader = await seedAgent(app, { capabilities: ['agents:read'] })
  const res = await patch(app, agent.agentId, reader.headers, { version: '2.0.0' })
  assertProblem(t, res, 403, 'FORBIDDEN')
  t.match(res.headers['www-authenticate'], /^Bearer .*error="insufficient_scope"/)
  t.equal((await agentRow(app, agent.agentId))?.version, agent.version)
})

t.test('an agent cannot update itself without agents:write (no self-service for PATCH)', async (t) => {
  const self = await seedAgent(app, { capabilities: ['agents:read', 'docs:read'] })
  const res = await patch(app, self.agent.agentId, self.headers, { capabilities: ['docs:read', 'docs:write'] })
  assertProblem(t, res, 403, 'FORBIDDEN')
  t.same((await agentRow(app, self.agent.agentId))?.capabilities, ['agents:read', 'docs:read'])
})

t.test('granting a platform scope the caller lacks is a 403, audited, and nothing changes', async (t) => {
  const writer = await seedAgent(app, { capabilities: ['agents:read', 'agents:write'] })
  const { agent } = await seedAgent(app)
  const res = await patch(app, agent.agentId, writer.headers, { capabilities: ['docs:read', 'credentials:write'] })

  assertProblem(t, res, 403, 'FORBIDDEN')
  t.match(res.headers['www-authenticate'], /error="insufficient_scope"/, 'a 403 carries error="insufficient_scope" (API.md)')
  t.same((await agentRow(app, agent.agentId))?.capabilities, agent.capabilities)
  const events = await auditOf(app, agent.agentId)
  t.equal(events.length, 1, 'only the refusal')
  t.match(events[0], { action: 'access.denied', outcome: 'failure', metadata: { actorId: writer.agent.agentId } })
})

t.test('a caller can grant the platform scopes it holds itself', async (t) => {
  const writer = await seedAgent(app, { capabilities: ['agents:read', 'agents:write'] })
  const { agent } = await seedAgent(app)
  const res = await patch(app, agent.agentId, writer.headers, { capabilities: ['agents:read', 'docs:read'] })
  t.equal(res.statusCode, 200, res.body)
  t.same(res.json().capabilities, ['agents:read', 'docs:read'])
})

t.test('suspension: 200 suspended, the agent\'s tokens stop working, one agent.suspended event', async (t) => {
  const target = await seedAgent(app, { capabilities: ['docs:read'] })
  t.equal((await app.inject({ method: 'GET', url: agentUrl(target.agent.agentId), headers: target.headers })).statusCode, 200, 'the token works before')

  const res = await patch(app, target.agent.agentId, admin.headers, { status: 'suspended' })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().status, 'suspended')
  const after = await app.inject({ method: 'GET', url: agentUrl(target.agent.agentId), headers: target.headers })
  assertProblem(t, after, 401, 'UNAUTHORIZED')
  t.match(after.headers['www-authenticate'], /error="invalid_token"/)
  const events = (await auditOf(app, target.agent.agentId)).filter((event) => event.action !== 'auth.failed')
  t.equal(events.length, 1)
  t.match(events[0], { action: 'agent.suspended', outcome: 'success', metadata: { actorId: admin.agent.agentId, from: 'active', to: 'suspended' } })
})

t.test('reactivation: 200 active, one agent.reactivated event, old tokens stay dead, new ones work', async (t) => {
  const target = await seedAgent(app, { capabilities: ['docs:read'] })
  t.equal((await patch(app, target.agent.agentId, admin.headers, { status: 'suspended' })).statusCode, 200)
  const res = await patch(app, target.agent.agentId, admin.headers, { status: 'active' })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().status, 'active')

  const old = await app.inject({ method: 'GET', url: agentUrl(target.agent.agentId), headers: target.headers })
  assertProblem(t, old, 401, 'UNAUTHORIZED')
  const later = Math.floor(Date.now() / 1000) + 2
  const fresh = await mintToken(app, target.agent.agentId, { scope: 'docs:read', iat: later, exp: later + 600 })
  t.equal((await app.inject({ method: 'GET', url: agentUrl(target.agent.agentId), headers: bearer(fresh) })).statusCode, 200, 'a token issued after reactivation works')

  const events = (await auditOf(app, target.agent.agentId)).filter((event) => event.action !== 'auth.failed')
  t.same(events.map((event) => event.action), ['agent.suspended', 'agent.reactivated'])
  t.match(events[1], { metadata: { actorId: admin.agent.agentId, from: 'suspended', to: 'active' } })
})

t.test('a status change together with field changes writes exactly one event', async (t) => {
  const { agent } = await seedAgent(app)
  const res = await patch(app, agent.agentId, admin.headers, { status: 'suspended', version: '4.0.0' })
  t.equal(res.statusCode, 200, res.body)
  t.match(res.json(), { status: 'suspended', version: '4.0.0' })
  const events = await auditOf(app, agent.agentId)
  t.equal(events.length, 1)
  t.equal(events[0].action, 'agent.suspended')
})

t.test('decommissioned is final: PATCH of a decommissioned agent is a 409 AGENT_ALREADY_DECOMMISSIONED and changes nothing', async (t) => {
  const { agent } = await seedAgent(app)
  const done = await patch(app, agent.agentId, admin.headers, { status: 'decommissioned' })
  t.equal(done.statusCode, 200, done.body)
  t.equal(done.json().status, 'decommissioned')
  const before = await agentRow(app, agent.agentId)

  for (const body of [{ status: 'active' }, { status: 'suspended' }, { version: '5.0.0' }, { status: 'decommissioned' }]) {
    assertProblem(t, await patch(app, agent.agentId, admin.headers, body), 409, 'AGENT_ALREADY_DECOMMISSIONED')
  }
  t.same(await agentRow(app, agent.agentId), before)
  const events = await auditOf(app, agent.agentId)
  t.equal(events.filter((event) => event.action === 'agent.decommissioned').length, 1)
  t.equal(events.filter((event) => event.action === 'agent.reactivated' || event.action === 'agent.updated').length, 0)
})

t.test('a suspended agent can be decommissioned by PATCH', async (t) => {
  const { agent } = await seedAgent(app)
  t.equal((await patch(app, agent.agentId, admin.headers, { status: 'suspended' })).statusCode, 200)
  const res = await patch(app, agent.agentId, admin.headers, { status: 'decommissioned' })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().status, 'decommissioned')
})

t.test('the last active agents:write holder cannot be suspended or decommissioned: 409, unchanged, audited', async (t) => {
  const solo = await build(t)
  const only = await seedAdmin(solo)
  const before = await agentRow(solo, only.agent.agentId)

  const suspend = await patch(solo, only.agent.agentId, only.headers, { status: 'suspended' })
  assertProblem(t, suspend, 409)
  const viaPatch = await patch(solo, only.agent.agentId, only.headers, { status: 'decommissioned' })
  assertProblem(t, viaPatch, 409)
  const viaDelete = await solo.inject({ method: 'DELETE', url: agentUrl(only.agent.agentId), headers: only.headers })
  assertProblem(t, viaDelete, 409)

  t.same(await agentRow(solo, only.agent.agentId), before, 'the agent is untouched')
  t.equal((await solo.inject({ method: 'GET', url: agentUrl(only.agent.agentId), headers: only.headers })).statusCode, 200, 'its token still works')
  const denied = (await auditByActor(solo, only.agent.agentId)).filter((event) => event.action === 'access.denied')
  t.equal(denied.length, 3, 'each refusal is audited once')
  t.equal((await auditByActor(solo, only.agent.agentId)).filter((event) => event.outcome === 'success').length, 0, 'no state change recorded')
})

t.test('a suspended holder does not count: once the other holder is suspended the last one is protected', async (t) => {
  const pair = await build(t)
  const first = await seedAdmin(pair)
  const second = await seedAdmin(pair)

  const suspendSecond = await patch(pair, second.agent.agentId, first.headers, { status: 'suspended' })
  t.equal(suspendSecond.statusCode, 200, 'with another active holder a holder can be suspended')
  assertProblem(t, await patch(pair, first.agent.agentId, first.headers, { status: 'suspended' }), 409)
  assertProblem(t, await pair.inject({ method: 'DELETE', url: agentUrl(first.agent.agentId), headers: first.headers }), 409)
  t.equal((await agentRow(pair, first.agent.agentId))?.status, 'active')

  t.equal((await patch(pair, second.agent.agentId, first.headers, { status: 'active' })).statusCode, 200, 'reactivated')
  const again = await pair.inject({ method: 'POST', url: '/api/v1/agents', headers: first.headers, payload: agentBody() })
  t.equal(again.statusCode, 201, 'the remaining admin still administers')
})

/**
 * Admins that hold agents:write but cannot authenticate: no credential, only revoked ones, only
 * expired ones. None of them could ever obtain a token, so none of them keeps the system administrable.
 */
async function seedUnusableAdmins (target: TestApp): Promise<string[]> {
  const ids: string[] = []
  for (const credentials of [[], [{ revoked: true }], [{ expired: true }], [{ revoked: true }, { expired: true }]]) {
    const agent = await insertAgent(target.pg, agentBody({ capabilities: [...PLATFORM_SCOPES], owner: 'platform' }) as never)
    for (const credential of credentials as Array<{ revoked?: boolean, expired?: boolean }>) {
      const credentialId = randomUUID()
      await insertCredential(target.pg, { credentialId, clientId: agent.agentId, secretHash: 'not-a-hash', expiresAt: credential.expired === true ? new Date(Date.now() - 60_000).toISOString() : null })
      if (credential.revoked === true) await target.pg.query("UPDATE credentials SET status = 'revoked', revoked_at = now() WHERE credential_id = $1", [credentialId])
    }
    ids.push(agent.agentId)
  }
  return ids
}

t.test('agents:write holders that cannot authenticate do not count: the last usable admin cannot be suspended, decommissioned or narrowed', async (t) => {
  const solo = await build(t)
  const only = await seedAdmin(solo)
  const ghosts = await seedUnusableAdmins(solo)
  const before = await agentRow(solo, only.agent.agentId)

  assertProblem(t, await patch(solo, only.agent.agentId, only.headers, { status: 'suspended' }), 409, 'CONFLICT')
  assertProblem(t, await patch(solo, only.agent.agentId, only.headers, { capabilities: ['agents:read'] }), 409, 'CONFLICT')
  assertProblem(t, await solo.inject({ method: 'DELETE', url: agentUrl(only.agent.agentId), headers: only.headers }), 409, 'CONFLICT')
  t.same(await agentRow(solo, only.agent.agentId), before, 'the last usable admin is untouched')
  const reasons = (await auditByActor(solo, only.agent.agentId)).filter((event) => event.action === 'access.denied').map((event) => event.metadata.reason)
  t.same(reasons, ['last_admin', 'last_admin', 'last_admin'], 'each refusal audited once')

  const suspendGhost = await patch(solo, ghosts[0], only.headers, { status: 'suspended' })
  t.equal(suspendGhost.statusCode, 200, 'an admin that cannot authenticate may itself be suspended while a usable one remains')

  // once another admin can authenticate, the first one may go
  await insertCredential(solo.pg, { credentialId: randomUUID(), clientId: ghosts[1], secretHash: 'not-a-hash', expiresAt: new Date(Date.now() + 3_600_000).toISOString() })
  const suspended = await patch(solo, only.agent.agentId, only.headers, { status: 'suspended' })
  t.equal(suspended.statusCode, 200, suspended.body)
})
