import t from 'tap'
import pg from 'pg'
import type { LightMyRequestResponse } from 'fastify'
import { build, createSchema, mintToken, PLATFORM_SCOPES, seedAdmin, seedAgent, seedCredential, testConfig } from '../../helper.js'
import { buildApp } from '../../../app.js'
import { assertProblem, type Tap } from '../../routes/agents/support.js'
import { credentialsUrl, credentialUrl, requestToken } from '../../routes/oauth/support.js'
import { within } from '../../support/oauth-flow.js'

/**
 * No escalation through credentials (API.md, "Scopes and who may do what"): a client secret is the
 * whole power of its agent, so whoever generates or rotates one must already hold that power —
 * every capability of its own agent (self-service), or every *platform* capability of another
 * agent (with credentials:write). A refusal is 403 insufficient_scope, changes nothing and is
 * audited once as access.denied with reason privilege_escalation. Revoking only removes power.
 */
const app = await build(t)
const admin = await seedAdmin(app)
const adminId = admin.agent.agentId
// the credential the admin's own token hangs on: rotating or revoking it would end the admin's session
const adminCredential = await seedCredential(app, adminId)

const as = (token: string) => ({ authorization: `Bearer ${token}` })

/** A credential manager of the kind an operator would set up: it can see credentials and write them. */
const manager = await seedAgent(app, { capabilities: ['credentials:read', 'credentials:write', 'docs:read'] })
const managerId = manager.agent.agentId

async function credentialsOf (agentId: string): Promise<Array<{ credential_id: string, status: string, secret_hash: string }>> {
  const { rows } = await app.pg.query('SELECT credential_id, status, secret_hash FROM credentials WHERE client_id = $1 ORDER BY credential_id', [agentId])
  return rows
}

async function escalationDenials (actorId: string): Promise<Array<{ agent_id: string, metadata: Record<string, unknown> }>> {
  return (await app.pg.query(
    "SELECT agent_id, metadata FROM audit_events WHERE action = 'access.denied' AND metadata->>'actorId' = $1 AND metadata->>'reason' = 'privilege_escalation' ORDER BY created_at, event_id",
    [actorId])).rows
}

/** Runs `attempt`, which must be refused as an escalation about `targetId`: 403, nothing of the target changed, one event. */
async function assertEscalationRefused (t: Tap, actorId: string, targetId: string, attempt: () => Promise<LightMyRequestResponse>, missing?: string[]): Promise<void> {
  const before = await credentialsOf(targetId)
  const denialsBefore = (await escalationDenials(actorId)).length
  const res = await attempt()
  assertProblem(t, res, 403, 'FORBIDDEN')
  t.match(res.headers['www-authenticate'], /^Bearer error="insufficient_scope"/, 'RFC 6750 insufficient_scope challenge')
  t.notOk('clientSecret' in res.json(), 'no secret in the refusal')
  if (missing !== undefined) t.match(res.headers['www-authenticate'], `scope="${missing.join(' ')}"`, 'the challenge names what the caller lacks')
  t.same(await credentialsOf(targetId), before, 'no credential created, rotated or revoked')
  const denials = await escalationDenials(actorId)
  t.equal(denials.length - denialsBefore, 1, 'exactly one access.denied, reason privilege_escalation')
  t.equal(denials[denials.length - 1]?.agent_id, targetId, 'the event names the target agent')
}

t.test('credentials:write cannot mint a secret for an admin: 403, nothing created, audited once', async (t) => {
  await assertEscalationRefused(t, managerId, adminId,
    () => app.inject({ method: 'POST', url: credentialsUrl(adminId), headers: manager.headers }),
    PLATFORM_SCOPES.filter((scope) => !['credentials:read', 'credentials:write'].includes(scope)).sort())
})

t.test('credentials:write cannot rotate an admin\'s credential: 403, the old secret stays, audited once', async (t) => {
  await assertEscalationRefused(t, managerId, adminId,
    () => app.inject({ method: 'POST', url: `${credentialUrl(adminId, adminCredential)}/rotate`, headers: manager.headers }))
  t.equal((await app.inject({ method: 'GET', url: `/api/v1/agents/${adminId}`, headers: admin.headers })).statusCode, 200, 'the admin\'s token still works')
})

t.test('one platform capability beyond the caller\'s scopes is enough to refuse', async (t) => {
  const target = await seedAgent(app, { capabilities: ['docs:read', 'tokens:read'] })
  const credentialId = await seedCredential(app, target.agent.agentId)
  await assertEscalationRefused(t, managerId, target.agent.agentId,
    () => app.inject({ method: 'POST', url: credentialsUrl(target.agent.agentId), headers: manager.headers }), ['tokens:read'])
  await assertEscalationRefused(t, managerId, target.agent.agentId,
    () => app.inject({ method: 'POST', url: `${credentialUrl(target.agent.agentId, credentialId)}/rotate`, headers: manager.headers }), ['tokens:read'])
})

t.test('the caller\'s effective scope counts, not its capabilities: a narrowed token of a full admin is refused too', async (t) => {
  const narrowed = await mintToken(app, adminId, { scope: 'credentials:read credentials:write' })
  const target = await seedAgent(app, { capabilities: ['agents:read'] })
  await assertEscalationRefused(t, adminId, target.agent.agentId,
    () => app.inject({ method: 'POST', url: credentialsUrl(target.agent.agentId), headers: as(narrowed) }), ['agents:read'])
})

t.test('another agent\'s custom capabilities are not checked: credentials:write may generate and rotate for it', async (t) => {
  // the documented impersonation-level power of credentials:write (README, Security model)
  const target = await seedAgent(app, { capabilities: ['files:write', 'billing:admin', 'credentials:read'] })
  const generated = await app.inject({ method: 'POST', url: credentialsUrl(target.agent.agentId), headers: manager.headers })
  t.equal(generated.statusCode, 201, generated.body)
  const { credentialId, clientSecret } = generated.json()
  const token = await requestToken(app, { agentId: target.agent.agentId, secret: clientSecret })
  t.equal(token.statusCode, 200, 'the secret works')
  t.equal(token.json().scope, 'files:write billing:admin credentials:read', 'with every capability of the target')
  const rotated = await app.inject({ method: 'POST', url: `${credentialUrl(target.agent.agentId, credentialId)}/rotate`, headers: manager.headers })
  t.equal(rotated.statusCode, 200, rotated.body)
  t.same(await escalationDenials(managerId).then((rows) => rows.filter((row) => row.agent_id === target.agent.agentId)), [], 'nothing refused')
})

t.test('revoking another agent\'s credential needs credentials:write only, even an admin\'s', async (t) => {
  const other = await seedAdmin(app)
  const credentialId = await seedCredential(app, other.agent.agentId)
  const res = await app.inject({ method: 'DELETE', url: credentialUrl(other.agent.agentId, credentialId), headers: manager.headers })
  t.equal(res.statusCode, 204, res.body)
  t.equal((await credentialsOf(other.agent.agentId)).find((row) => row.credential_id === credentialId)?.status, 'revoked')
})

t.test('self-service: a token narrowed below its agent\'s capabilities cannot generate or rotate a secret', async (t) => {
  const self = await seedAgent(app, { capabilities: ['docs:read', 'files:write'] })
  const agentId = self.agent.agentId
  const credentialId = await seedCredential(app, agentId)
  const narrowed = as(await mintToken(app, agentId, { scope: 'docs:read' }))
  await assertEscalationRefused(t, agentId, agentId,
    () => app.inject({ method: 'POST', url: credentialsUrl(agentId), headers: narrowed }), ['files:write'])
  await assertEscalationRefused(t, agentId, agentId,
    () => app.inject({ method: 'POST', url: `${credentialUrl(agentId, credentialId)}/rotate`, headers: narrowed }), ['files:write'])
  const full = await app.inject({ method: 'POST', url: credentialsUrl(agentId), headers: self.headers })
  t.equal(full.statusCode, 201, 'control: a token covering every capability may')
})

t.test('self-service: an admin\'s token narrowed to docs:read cannot mint a full-power secret for its own agent', async (t) => {
  const self = await seedAgent(app, { capabilities: [...PLATFORM_SCOPES, 'docs:read'], owner: 'platform' })
  const agentId = self.agent.agentId
  const credentialId = await seedCredential(app, agentId)
  const narrowed = as(await mintToken(app, agentId, { scope: 'docs:read' }))
  await assertEscalationRefused(t, agentId, agentId,
    () => app.inject({ method: 'POST', url: credentialsUrl(agentId), headers: narrowed }))
  await assertEscalationRefused(t, agentId, agentId,
    () => app.inject({ method: 'POST', url: `${credentialUrl(agentId, credentialId)}/rotate`, headers: narrowed }))
  // holding credentials:write does not turn self-service into the other-agent rule (platform scopes only)
  const platformOnly = as(await mintToken(app, agentId, { scope: PLATFORM_SCOPES.join(' ') }))
  await assertEscalationRefused(t, agentId, agentId,
    () => app.inject({ method: 'POST', url: credentialsUrl(agentId), headers: platformOnly }), ['docs:read'])
})

t.test('self-service: revoking its own credential is allowed with any token, however narrow', async (t) => {
  const self = await seedAgent(app, { capabilities: ['docs:read', 'files:write', 'agents:read'] })
  const agentId = self.agent.agentId
  const credentialId = await seedCredential(app, agentId)
  const narrowed = as(await mintToken(app, agentId, { scope: 'docs:read' }))
  const res = await app.inject({ method: 'DELETE', url: credentialUrl(agentId, credentialId), headers: narrowed })
  t.equal(res.statusCode, 204, res.body)
  t.equal((await credentialsOf(agentId)).find((row) => row.credential_id === credentialId)?.status, 'revoked')
})

t.test('the check reads the locked row: capabilities granted while the request waits for the agent are seen', async (t) => {
  const target = await seedAgent(app, { capabilities: ['docs:read'] })
  const agentId = target.agent.agentId
  const db = new pg.Client({ connectionString: app.databaseUrl })
  await db.connect()
  t.teardown(() => db.end())
  const before = await credentialsOf(agentId)
  const holder = (await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid
  // an admin's PATCH in flight: the row is locked and already says agents:write, not committed yet
  await db.query('BEGIN')
  await db.query('SELECT 1 FROM agents WHERE agent_id = $1 FOR UPDATE', [agentId])
  await db.query("UPDATE agents SET capabilities = array_append(capabilities, 'agents:write') WHERE agent_id = $1", [agentId])
  const pending = app.inject({ method: 'POST', url: credentialsUrl(agentId), headers: manager.headers })
  const waited = await within(async () => (await app.pg.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))', [holder])).rows[0].n > 0, 60_000, 20)
  t.not(waited, null, 'the request waits for the agent\'s row')
  await db.query('COMMIT')
  const res = await pending
  assertProblem(t, res, 403, 'FORBIDDEN')
  t.match(res.headers['www-authenticate'], 'scope="agents:write"', 'refused on the capabilities committed before the lock was granted')
  t.same(await credentialsOf(agentId), before, 'no credential created')
})

t.test('a handler of a secret-minting action that never asks the policy about its target answers 500: its secret never leaves', async (t) => {
  // the backstop for a future route (say, PUT …/jwks) that forgets authorizeTarget
  const { databaseUrl } = await createSchema(t)
  const careless = await buildApp({ config: testConfig(databaseUrl) })
  t.teardown(() => careless.close())
  await careless.register(async function carelessRoutes (routes) {
    routes.post('/api/v1/agents/:agentId/careless', { config: { policy: 'credentials.create' } }, async () => ({ clientSecret: 'sk_live_never-to-be-seen' }))
  })
  await careless.ready()
  const caller = await seedAdmin(careless)
  const res = await careless.inject({ method: 'POST', url: `/api/v1/agents/${caller.agent.agentId}/careless`, headers: caller.headers })
  t.equal(res.statusCode, 500)
  t.notOk(res.body.includes('sk_live_never-to-be-seen'), 'the answer holds no secret')
})
