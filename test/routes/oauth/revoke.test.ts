import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build, mintToken, seedAdmin } from '../../helper.js'
import {
  accessToken, assertOAuthError, auditRows, basic, decodeToken, introspect, oauthPost, registerClient, REVOKE, type Client
} from './support.js'

const app = await build(t)
const admin = await seedAdmin(app)
const owner = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })
const other = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })

const asClient = (client: Pick<Client, 'agentId' | 'secret'>) => ({ authorization: basic(client.agentId, client.secret) })
const selfRead = (agentId: string, token: string) =>
  app.inject({ method: 'GET', url: `/api/v1/agents/${agentId}`, headers: { authorization: `Bearer ${token}` } })

t.test('a client revokes its own token: 200 with an empty body, and the token is dead for introspection and the management API', async (t) => {
  const token = await accessToken(app, owner)
  t.equal((await selfRead(owner.agentId, token)).statusCode, 200, 'alive before')

  const res = await oauthPost(app, REVOKE, { fields: { token }, headers: asClient(owner) })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.body, '', 'empty body')
  t.equal(res.headers['cache-control'], 'no-store')

  t.same(await introspect(app, token, admin), { active: false })
  const after = await selfRead(owner.agentId, token)
  t.equal(after.statusCode, 401, after.body)
  t.match(after.headers['www-authenticate'], /error="invalid_token"/)
})

t.test('revocation writes exactly one token.revoked event with the jti and no token; revoking again changes nothing', async (t) => {
  const token = await accessToken(app, owner)
  const jti = decodeToken(token).payload.jti as string
  t.equal((await oauthPost(app, REVOKE, { fields: { token }, headers: asClient(owner), json: true })).statusCode, 200)
  t.equal((await oauthPost(app, REVOKE, { fields: { token }, headers: asClient(owner) })).statusCode, 200, 'again: still 200')

  const events = await auditRows(app, 'token.revoked', { metadataKey: 'jti', metadataValue: jti })
  t.equal(events.length, 1)
  t.match(events[0], { agent_id: owner.agentId, outcome: 'success' })
  t.notOk(JSON.stringify(events[0]).includes(token), 'the token itself is not in the event')
})

t.test('a client may revoke one of its tokens with another of its own Bearer tokens; only that token dies', async (t) => {
  const victim = await accessToken(app, owner)
  const caller = await accessToken(app, owner)
  const res = await oauthPost(app, REVOKE, { fields: { token: victim }, headers: { authorization: `Bearer ${caller}` } })
  t.equal(res.statusCode, 200, res.body)
  t.same(await introspect(app, victim, admin), { active: false })
  t.equal((await introspect(app, caller, admin)).active, true, 'the calling token is untouched')
})

t.test('a wrong token_type_hint is ignored: the access token is revoked anyway', async (t) => {
  const token = await accessToken(app, owner)
  const res = await oauthPost(app, REVOKE, { fields: { token, token_type_hint: 'refresh_token' }, headers: asClient(owner) })
  t.equal(res.statusCode, 200, res.body)
  t.same(await introspect(app, token, admin), { active: false })
})

t.test('unknown, malformed and expired tokens are answered 200 with an empty body', async (t) => {
  const now = Math.floor(Date.now() / 1000)
  const tokens = [
    'not-a-token',
    'abc.def.ghi',
    await mintToken(app, owner.agentId, { scope: 'docs:read' }, { credentialId: randomUUID() }),
    await mintToken(app, owner.agentId, { scope: 'docs:read', iat: now - 7200, exp: now - 3600 })
  ]
  for (const token of tokens) {
    const res = await oauthPost(app, REVOKE, { fields: { token }, headers: asClient(owner) })
    t.equal(res.statusCode, 200, res.body)
    t.equal(res.body, '')
  }
})

t.test('another client\'s token is not revoked: 400 unauthorized_client, the token stays valid, the refusal is audited once', async (t) => {
  const token = await accessToken(app, owner)
  const jti = decodeToken(token).payload.jti as string
  const res = await oauthPost(app, REVOKE, { fields: { token }, headers: asClient(other) })

  assertOAuthError(t, res, 400, 'unauthorized_client')
  t.equal((await introspect(app, token, admin)).active, true, 'still active for introspection')
  t.equal((await selfRead(owner.agentId, token)).statusCode, 200, 'still accepted by the management API')
  const denied = (await auditRows(app, 'access.denied', { agentId: owner.agentId })).filter((row) => row.metadata.jti === jti)
  t.equal(denied.length, 1, 'one access.denied event')
  t.equal(denied[0]?.metadata.actorId, other.agentId, 'naming the caller')
  t.equal((await auditRows(app, 'token.revoked', { metadataKey: 'jti', metadataValue: jti })).length, 0, 'no token.revoked event')
})

t.test('another client\'s own Bearer token cannot revoke it either', async (t) => {
  const token = await accessToken(app, owner)
  const res = await oauthPost(app, REVOKE, { fields: { token }, headers: { authorization: `Bearer ${await accessToken(app, other)}` } })
  assertOAuthError(t, res, 400, 'unauthorized_client')
  t.equal((await introspect(app, token, admin)).active, true)
})

t.test('a holder of agents:write revokes any agent\'s token, by Bearer token or by client credentials', async (t) => {
  const first = await accessToken(app, owner)
  const res = await oauthPost(app, REVOKE, { fields: { token: first }, headers: admin.headers })
  t.equal(res.statusCode, 200, res.body)
  t.same(await introspect(app, first, admin), { active: false })

  const operator = await registerClient(app, admin.headers, { capabilities: ['agents:write'] })
  const second = await accessToken(app, owner)
  t.equal((await oauthPost(app, REVOKE, { fields: { token: second }, headers: asClient(operator) })).statusCode, 200)
  t.same(await introspect(app, second, admin), { active: false })
})

t.test('an unauthenticated revocation is 401 invalid_client and revokes nothing', async (t) => {
  const token = await accessToken(app, owner)
  assertOAuthError(t, await oauthPost(app, REVOKE, { fields: { token } }), 401, 'invalid_client')
  const wrong = await oauthPost(app, REVOKE, { fields: { token }, headers: asClient({ agentId: owner.agentId, secret: 'sk_live_wrong' }) })
  assertOAuthError(t, wrong, 401, 'invalid_client')
  t.match(wrong.headers['www-authenticate'], /^Basic /)
  t.equal((await introspect(app, token, admin)).active, true)
})
