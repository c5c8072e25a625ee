import t from 'tap'
import { build, mintToken, seedAdmin, seedCredential } from '../../helper.js'
import { assertProblem, UNKNOWN_AGENT } from '../agents/support.js'
import {
  accessToken, assertOAuthError, auditRows, credentialsUrl, credentialUrl, introspect, registerClient, requestToken,
  UNKNOWN_CREDENTIAL, type Client
} from '../oauth/support.js'

const app = await build(t)
const admin = await seedAdmin(app)

const rotate = (agentId: string, credentialId: string) =>
  app.inject({ method: 'POST', url: `${credentialUrl(agentId, credentialId)}/rotate`, headers: admin.headers })
const revoke = (agentId: string, credentialId: string) =>
  app.inject({ method: 'DELETE', url: credentialUrl(agentId, credentialId), headers: admin.headers })
const selfRead = (agentId: string, token: string) =>
  app.inject({ method: 'GET', url: `/api/v1/agents/${agentId}`, headers: { authorization: `Bearer ${token}` } })

/** A client with a second credential that expires in a week. */
async function expiringClient (): Promise<Client & { expiresAt: string }> {
  const base = await registerClient(app, admin.headers)
  const expiresAt = new Date(Date.now() + 7 * 86_400_000).toISOString()
  const res = await app.inject({ method: 'POST', url: credentialsUrl(base.agentId), headers: admin.headers, payload: { expiresAt } })
  if (res.statusCode !== 201) throw new Error(`credential generation failed: ${res.statusCode} ${res.body}`)
  return { agentId: base.agentId, credentialId: res.json().credentialId, secret: res.json().clientSecret, expiresAt: res.json().expiresAt }
}

t.test('rotation answers 200 with the same credentialId, createdAt and expiresAt and a new secret, Cache-Control: no-store', async (t) => {
  const client = await expiringClient()
  const res = await rotate(client.agentId, client.credentialId)

  t.equal(res.statusCode, 200, res.body)
  t.equal(res.headers['cache-control'], 'no-store')
  const body = res.json()
  t.match(body, { credentialId: client.credentialId, clientId: client.agentId, status: 'active', expiresAt: client.expiresAt, revokedAt: null })
  t.match(body.clientSecret, /^sk_live_[A-Za-z0-9_-]+$/)
  t.not(body.clientSecret, client.secret)
})

t.test('after rotation the new secret works and the old one is refused at once, even right after it was used', async (t) => {
  const client = await registerClient(app, admin.headers)
  const before = await accessToken(app, client)
  const rotated = (await rotate(client.agentId, client.credentialId)).json()

  assertOAuthError(t, await requestToken(app, client), 401, 'invalid_client')
  assertOAuthError(t, await requestToken(app, client, { auth: 'post' }), 401, 'invalid_client')
  const fresh = await requestToken(app, { agentId: client.agentId, secret: rotated.clientSecret })
  t.equal(fresh.statusCode, 200, fresh.body)

  t.test('tokens issued before the rotation stay valid', async (t) => {
    t.equal((await introspect(app, before, admin)).active, true, 'for introspection')
    t.equal((await selfRead(client.agentId, before)).statusCode, 200, 'and for the management API')
  })
})

t.test('revocation: 204; the secret stops, and so do its tokens, for the management API and introspection, at once', async (t) => {
  const client = await registerClient(app, admin.headers)
  const token = await accessToken(app, client)
  t.equal((await selfRead(client.agentId, token)).statusCode, 200, 'alive before')

  const res = await revoke(client.agentId, client.credentialId)
  t.equal(res.statusCode, 204)
  t.equal(res.body, '')

  t.equal((await selfRead(client.agentId, token)).statusCode, 401, 'management API refuses the token')
  t.same(await introspect(app, token, admin), { active: false })
  assertOAuthError(t, await requestToken(app, client), 401, 'invalid_client')
  const { data } = (await app.inject({ method: 'GET', url: credentialsUrl(client.agentId), headers: admin.headers })).json()
  t.match(data[0], { credentialId: client.credentialId, status: 'revoked', revokedAt: String })
})

t.test('revoking one credential leaves the tokens of the agent\'s other credentials alone', async (t) => {
  const client = await registerClient(app, admin.headers)
  const second = (await app.inject({ method: 'POST', url: credentialsUrl(client.agentId), headers: admin.headers })).json()
  const kept = await accessToken(app, { agentId: client.agentId, secret: second.clientSecret })
  const doomed = await accessToken(app, client)
  t.equal((await revoke(client.agentId, client.credentialId)).statusCode, 204)
  t.same(await introspect(app, doomed, admin), { active: false })
  t.equal((await introspect(app, kept, admin)).active, true)
  t.equal((await requestToken(app, { agentId: client.agentId, secret: second.clientSecret })).statusCode, 200)
})

t.test('a revoked credential: revoke again and rotate are 409 CREDENTIAL_ALREADY_REVOKED', async (t) => {
  const client = await registerClient(app, admin.headers)
  t.equal((await revoke(client.agentId, client.credentialId)).statusCode, 204)
  assertProblem(t, await revoke(client.agentId, client.credentialId), 409, 'CREDENTIAL_ALREADY_REVOKED')
  assertProblem(t, await rotate(client.agentId, client.credentialId), 409, 'CREDENTIAL_ALREADY_REVOKED')
  assertOAuthError(t, await requestToken(app, client), 401, 'invalid_client')
})

t.test('generate, rotate and revoke write credential.generated, .rotated and .revoked exactly once each', async (t) => {
  const client = await registerClient(app, admin.headers)
  t.equal((await rotate(client.agentId, client.credentialId)).statusCode, 200)
  t.equal((await revoke(client.agentId, client.credentialId)).statusCode, 204)
  t.equal((await revoke(client.agentId, client.credentialId)).statusCode, 409, 'a refused second revocation')

  const { rows } = await app.pg.query<{ action: string, agent_id: string, actor: string }>(
    `SELECT action, agent_id, metadata->>'actorId' AS actor FROM audit_events
     WHERE action LIKE 'credential.%' AND metadata->>'credentialId' = $1 ORDER BY action`, [client.credentialId])
  t.same(rows.map((row) => row.action), ['credential.generated', 'credential.revoked', 'credential.rotated'])
  for (const row of rows) t.same({ agent: row.agent_id, actor: row.actor }, { agent: client.agentId, actor: admin.agent.agentId }, row.action)
  t.equal((await auditRows(app, 'credential.rotated', { agentId: client.agentId })).length, 1)
})

t.test('an unknown credential is a 404 CREDENTIAL_NOT_FOUND for rotate and revoke', async (t) => {
  const client = await registerClient(app, admin.headers)
  assertProblem(t, await rotate(client.agentId, UNKNOWN_CREDENTIAL), 404, 'CREDENTIAL_NOT_FOUND')
  assertProblem(t, await revoke(client.agentId, UNKNOWN_CREDENTIAL), 404, 'CREDENTIAL_NOT_FOUND')
})

t.test('another agent\'s credential named under this agent is a 404 CREDENTIAL_NOT_FOUND and stays untouched', async (t) => {
  const mine = await registerClient(app, admin.headers)
  const theirs = await registerClient(app, admin.headers)
  assertProblem(t, await rotate(mine.agentId, theirs.credentialId), 404, 'CREDENTIAL_NOT_FOUND')
  assertProblem(t, await revoke(mine.agentId, theirs.credentialId), 404, 'CREDENTIAL_NOT_FOUND')
  t.equal((await requestToken(app, theirs)).statusCode, 200, 'its secret still works')
})

t.test('an unknown agent is a 404 AGENT_NOT_FOUND for rotate and revoke', async (t) => {
  const client = await registerClient(app, admin.headers)
  assertProblem(t, await rotate(UNKNOWN_AGENT, client.credentialId), 404, 'AGENT_NOT_FOUND')
  assertProblem(t, await revoke(UNKNOWN_AGENT, client.credentialId), 404, 'AGENT_NOT_FOUND')
})

t.test('rotation takes no body', async (t) => {
  const client = await registerClient(app, admin.headers)
  const res = await app.inject({ method: 'POST', url: `${credentialUrl(client.agentId, client.credentialId)}/rotate`, headers: admin.headers, payload: { expiresAt: new Date(Date.now() + 86_400_000).toISOString() } })
  t.ok(res.statusCode === 400 || res.statusCode === 415, `refused: ${res.statusCode}`)
  t.equal((await requestToken(app, client)).statusCode, 200, 'the secret was not rotated')
})

t.test('the last usable admin\'s last usable credential cannot be revoked: 409, the credential stays, audited', async (t) => {
  // revoking it would leave no agent able to obtain an agents:write token, like suspending that agent
  const solo = await build(t)
  const only = await seedAdmin(solo)
  const agentId = only.agent.agentId
  const statusOf = async (credentialId: string) =>
    (await solo.pg.query('SELECT status FROM credentials WHERE credential_id = $1', [credentialId])).rows[0]?.status
  const [first] = (await solo.pg.query('SELECT credential_id FROM credentials WHERE client_id = $1', [agentId])).rows.map((row) => row.credential_id as string)
  const refused = await solo.inject({ method: 'DELETE', url: credentialUrl(agentId, first), headers: only.headers })
  assertProblem(t, refused, 409, 'CONFLICT')
  t.equal(await statusOf(first), 'active', 'still active')
  const denials = (await auditRows(solo, 'access.denied', { agentId })).map((row) => row.metadata.reason)
  t.same(denials, ['last_admin'], 'the refusal is audited once')

  const second = await seedCredential(solo, agentId)
  const withSecond = { authorization: `Bearer ${await mintToken(solo, agentId, {}, { credentialId: second })}` }
  t.equal((await solo.inject({ method: 'DELETE', url: credentialUrl(agentId, first), headers: withSecond })).statusCode, 204, 'with another usable credential it may go')
  assertProblem(t, await solo.inject({ method: 'DELETE', url: credentialUrl(agentId, second), headers: withSecond }), 409, 'CONFLICT')
  t.equal(await statusOf(second), 'active', 'the last one stays')

  const other = await seedAdmin(solo)
  t.equal((await solo.inject({ method: 'DELETE', url: credentialUrl(agentId, second), headers: other.headers })).statusCode, 204,
    'once another admin can authenticate, it may be revoked')
})

t.test('a JSON null is a body, not none: refused, nothing rotated or generated', async (t) => {
  const client = await registerClient(app, admin.headers)
  const json = { ...admin.headers, 'content-type': 'application/json' }
  assertProblem(t, await app.inject({ method: 'POST', url: `${credentialUrl(client.agentId, client.credentialId)}/rotate`, headers: json, payload: 'null' }), 400, 'VALIDATION_ERROR')
  t.equal((await requestToken(app, client)).statusCode, 200, 'the secret was not rotated')
  assertProblem(t, await app.inject({ method: 'POST', url: `/api/v1/agents/${client.agentId}/credentials`, headers: json, payload: 'null' }), 400, 'VALIDATION_ERROR')
})
