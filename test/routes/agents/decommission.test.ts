import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build, RESOURCE_METADATA, seedAdmin, seedAgent } from '../../helper.js'
import { insertCredential, listCredentials, revokeCredential } from '../../../repositories/credentials.js'
import { agentRow, agentUrl, assertProblem, assertValidationError, auditOf, UNKNOWN_AGENT } from './support.js'

const app = await build(t)
const admin = await seedAdmin(app)

const remove = (agentId: string, headers: Record<string, string> = admin.headers) =>
  app.inject({ method: 'DELETE', url: agentUrl(agentId), headers })

async function addCredential (agentId: string): Promise<string> {
  const credentialId = randomUUID()
  await insertCredential(app.pg, { credentialId, clientId: agentId, secretHash: 'argon2id-hash-placeholder', expiresAt: null })
  return credentialId
}

t.test('DELETE decommissions: 204 with an empty body, the agent reads back decommissioned', async (t) => {
  const { agent } = await seedAgent(app)
  const res = await remove(agent.agentId)
  t.equal(res.statusCode, 204, res.body)
  t.equal(res.body, '')
  const read = await app.inject({ method: 'GET', url: agentUrl(agent.agentId), headers: admin.headers })
  t.equal(read.statusCode, 200, 'soft decommission: the agent still exists')
  t.equal(read.json().status, 'decommissioned')
})

t.test('DELETE again is a 409 AGENT_ALREADY_DECOMMISSIONED and writes no second event', async (t) => {
  const { agent } = await seedAgent(app)
  t.equal((await remove(agent.agentId)).statusCode, 204)
  const before = await agentRow(app, agent.agentId)
  assertProblem(t, await remove(agent.agentId), 409, 'AGENT_ALREADY_DECOMMISSIONED')
  t.same(await agentRow(app, agent.agentId), before)
  t.equal((await auditOf(app, agent.agentId)).filter((event) => event.action === 'agent.decommissioned').length, 1)
})

t.test('DELETE revokes every credential of the agent', async (t) => {
  const { agent } = await seedAgent(app)
  const first = await addCredential(agent.agentId)
  const second = await addCredential(agent.agentId)
  const earlier = await addCredential(agent.agentId)
  const revokedEarlier = await revokeCredential(app.pg, earlier)

  t.equal((await remove(agent.agentId)).statusCode, 204)
  const credentials = await listCredentials(app.pg, agent.agentId)
  t.ok(credentials.length >= 3)
  for (const credential of credentials) {
    t.equal(credential.status, 'revoked', `credential ${credential.credentialId} is revoked`)
    t.type(credential.revokedAt, 'string', 'with a revocation time')
  }
  t.ok([first, second].every((id) => credentials.some((credential) => credential.credentialId === id && credential.status === 'revoked')))
  t.equal(credentials.find((credential) => credential.credentialId === earlier)?.revokedAt, revokedEarlier.revokedAt, 'an already revoked credential keeps its revocation time')
})

t.test('DELETE writes one agent.decommissioned and one credential.revoked per credential it revokes', async (t) => {
  const { agent } = await seedAgent(app)
  await addCredential(agent.agentId)
  await addCredential(agent.agentId)
  await revokeCredential(app.pg, await addCredential(agent.agentId))
  const { rows } = await app.pg.query<{ credential_id: string }>(
    "SELECT credential_id FROM credentials WHERE client_id = $1 AND status <> 'revoked'", [agent.agentId])
  const revocable = rows.map((row) => row.credential_id).sort()

  t.equal((await remove(agent.agentId)).statusCode, 204)
  const events = await auditOf(app, agent.agentId)
  const decommissioned = events.filter((event) => event.action === 'agent.decommissioned')
  t.equal(decommissioned.length, 1)
  t.match(decommissioned[0], { outcome: 'success', agent_id: agent.agentId, metadata: { actorId: admin.agent.agentId, to: 'decommissioned' } })
  const revoked = events.filter((event) => event.action === 'credential.revoked')
  t.same(revoked.map((event) => event.metadata.credentialId).sort(), revocable, 'one event per credential revoked, none for the one already revoked')
  t.ok(revoked.every((event) => event.metadata.actorId === admin.agent.agentId && event.agent_id === agent.agentId))
  t.equal(events.length, 1 + revocable.length, 'nothing else')
})

t.test('DELETE invalidates the agent\'s tokens at once', async (t) => {
  const target = await seedAgent(app, { capabilities: ['docs:read'] })
  t.equal((await app.inject({ method: 'GET', url: agentUrl(target.agent.agentId), headers: target.headers })).statusCode, 200)
  t.equal((await remove(target.agent.agentId)).statusCode, 204)
  const res = await app.inject({ method: 'GET', url: agentUrl(target.agent.agentId), headers: target.headers })
  assertProblem(t, res, 401, 'UNAUTHORIZED')
  t.match(res.headers['www-authenticate'], /error="invalid_token"/)
})

t.test('a suspended agent can be decommissioned', async (t) => {
  const { agent } = await seedAgent(app)
  t.equal((await app.inject({ method: 'PATCH', url: agentUrl(agent.agentId), headers: admin.headers, payload: { status: 'suspended' } })).statusCode, 200)
  t.equal((await remove(agent.agentId)).statusCode, 204)
  t.equal((await agentRow(app, agent.agentId))?.status, 'decommissioned')
})

t.test('DELETE of an unknown well-formed agentId is a 404 AGENT_NOT_FOUND', async (t) => {
  assertProblem(t, await remove(UNKNOWN_AGENT), 404, 'AGENT_NOT_FOUND')
})

t.test('DELETE of a malformed agentId is a 400 VALIDATION_ERROR', async (t) => {
  assertValidationError(t, await remove('not-a-uuid'), 'params.agentId')
})

t.test('DELETE without a token is a 401 and the agent stays active', async (t) => {
  const { agent } = await seedAgent(app)
  const res = await app.inject({ method: 'DELETE', url: agentUrl(agent.agentId) })
  assertProblem(t, res, 401, 'UNAUTHORIZED')
  t.equal(res.headers['www-authenticate'], `Bearer resource_metadata="${RESOURCE_METADATA}"`)
  t.equal((await agentRow(app, agent.agentId))?.status, 'active')
})

t.test('DELETE by a caller that can read but not write is a 403 insufficient_scope; nothing is revoked', async (t) => {
  const { agent } = await seedAgent(app)
  const credentialId = await addCredential(agent.agentId)
  const reader = await seedAgent(app, { capabilities: ['agents:read'] })
  const res = await remove(agent.agentId, reader.headers)
  assertProblem(t, res, 403, 'FORBIDDEN')
  t.match(res.headers['www-authenticate'], /^Bearer .*error="insufficient_scope"/)
  t.equal((await agentRow(app, agent.agentId))?.status, 'active')
  t.equal((await listCredentials(app.pg, agent.agentId)).find((credential) => credential.credentialId === credentialId)?.status, 'active')
})

t.test('an agent cannot decommission itself without agents:write', async (t) => {
  const self = await seedAgent(app, { capabilities: ['agents:read', 'docs:read'] })
  assertProblem(t, await remove(self.agent.agentId, self.headers), 403, 'FORBIDDEN')
  t.equal((await agentRow(app, self.agent.agentId))?.status, 'active')
})
