import { generateKeyPairSync, randomUUID } from 'node:crypto'
import t from 'tap'
import { SignJWT } from 'jose'
import { build, ISSUER, mintToken, seedAdmin } from '../../helper.js'
import {
  accessToken, assertOAuthError, basic, decodeToken, INTROSPECT, introspect, oauthPost, registerClient, REVOKE
} from './support.js'

const ACTIVE_FIELDS = ['active', 'aud', 'client_id', 'exp', 'iat', 'iss', 'jti', 'scope', 'sub', 'token_type']

const app = await build(t)
const admin = await seedAdmin(app)
const owner = await registerClient(app, admin.headers, { capabilities: ['docs:read', 'docs:write'] })
const reader = await registerClient(app, admin.headers, { capabilities: ['tokens:read'] })
const bystander = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })

const bearerOf = (token: string) => ({ headers: { authorization: `Bearer ${token}` } })

t.test('an active token is answered with exactly the fields of API.md, matching the token, and Cache-Control: no-store', async (t) => {
  const token = await accessToken(app, owner)
  const { payload } = decodeToken(token)
  const res = await oauthPost(app, INTROSPECT, { fields: { token }, headers: admin.headers })

  t.equal(res.statusCode, 200, res.body)
  t.equal(res.headers['cache-control'], 'no-store')
  const body = res.json()
  t.same(Object.keys(body).sort(), ACTIVE_FIELDS)
  t.same(body, {
    active: true,
    scope: 'docs:read docs:write',
    client_id: owner.agentId,
    sub: owner.agentId,
    iss: ISSUER,
    aud: ISSUER,
    exp: payload.exp,
    iat: payload.iat,
    jti: payload.jti,
    token_type: 'Bearer'
  })
})

t.test('a JSON body works as well as a form', async (t) => {
  const token = await accessToken(app, owner)
  const res = await oauthPost(app, INTROSPECT, { fields: { token }, headers: admin.headers, json: true })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().active, true)
})

t.test('a Bearer caller whose token carries tokens:read sees other agents\' tokens', async (t) => {
  const readerToken = await accessToken(app, reader)
  t.equal((await introspect(app, await accessToken(app, owner), bearerOf(readerToken))).active, true)
})

t.test('a client authenticating with its credentials and holding tokens:read sees other agents\' tokens (basic and post)', async (t) => {
  const token = await accessToken(app, owner)
  t.equal((await introspect(app, token, reader)).active, true)
  const post = await oauthPost(app, INTROSPECT, { fields: { token, client_id: reader.agentId, client_secret: reader.secret } })
  t.equal(post.statusCode, 200, post.body)
  t.equal(post.json().active, true)
})

t.test('an agent without tokens:read may introspect its own tokens, by client credentials or by its own Bearer token', async (t) => {
  const token = await accessToken(app, bystander)
  t.equal((await introspect(app, token, bystander)).active, true)
  t.equal((await introspect(app, token, bearerOf(await accessToken(app, bystander)))).active, true)
})

t.test('a token the caller may not see is exactly {active:false}, whether the caller uses credentials or a Bearer token', async (t) => {
  const token = await accessToken(app, owner)
  t.same(await introspect(app, token, bystander), { active: false })
  t.same(await introspect(app, token, bearerOf(await accessToken(app, bystander))), { active: false })
  t.equal((await introspect(app, token, owner)).active, true, 'control: its owner sees it')
})

t.test('unknown, expired, revoked and malformed tokens are exactly {active:false}', async (t) => {
  const now = Math.floor(Date.now() / 1000)
  const revoked = await accessToken(app, owner)
  t.equal((await oauthPost(app, REVOKE, { fields: { token: revoked }, headers: { authorization: basic(owner.agentId, owner.secret) } })).statusCode, 200)
  // a live token's own claims, re-signed with a stranger's key or not signed at all: only the signature is wrong
  const live = await accessToken(app, owner)
  const strangerKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey
  const forged = await new SignJWT(decodeToken(live).payload)
    .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: decodeToken(live).header.kid as string })
    .sign(strangerKey)
  const unsigned = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url')}.${live.split('.')[1]}.`

  const cases: Record<string, string> = {
    'naming a credential that does not exist': await mintToken(app, owner.agentId, { scope: 'docs:read' }, { credentialId: randomUUID() }),
    'expired an hour ago': await mintToken(app, owner.agentId, { scope: 'docs:read', iat: now - 7200, exp: now - 3600 }),
    revoked,
    'signed by another key': forged,
    'not a JWT': 'not-a-token',
    'three garbage segments': 'abc.def.ghi',
    'a JWT with alg none': unsigned
  }
  for (const [label, token] of Object.entries(cases)) {
    const res = await oauthPost(app, INTROSPECT, { fields: { token }, headers: admin.headers })
    t.equal(res.statusCode, 200, `${label}: ${res.body}`)
    t.same(res.json(), { active: false }, label)
  }
  t.equal((await introspect(app, live, admin)).active, true, 'control: the genuine token is active')
})

t.test('narrowing an agent\'s capabilities narrows the scope introspection reports, at once', async (t) => {
  const agent = await registerClient(app, admin.headers, { capabilities: ['docs:read', 'docs:write'] })
  const token = await accessToken(app, agent)
  t.equal((await introspect(app, token, admin)).scope, 'docs:read docs:write')

  const narrowed = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.agentId}`, headers: admin.headers, payload: { capabilities: ['docs:read'] } })
  t.equal(narrowed.statusCode, 200, narrowed.body)
  const after = await introspect(app, token, admin)
  t.equal(after.active, true)
  t.equal(after.scope, 'docs:read')
})

t.test('a token issued before its agent was suspended is {active:false}, also after reactivation', async (t) => {
  const agent = await registerClient(app, admin.headers)
  const token = await accessToken(app, agent)
  const url = `/api/v1/agents/${agent.agentId}`
  t.equal((await app.inject({ method: 'PATCH', url, headers: admin.headers, payload: { status: 'suspended' } })).statusCode, 200)
  t.same(await introspect(app, token, admin), { active: false })
  t.equal((await app.inject({ method: 'PATCH', url, headers: admin.headers, payload: { status: 'active' } })).statusCode, 200)
  t.same(await introspect(app, token, admin), { active: false })
})

t.test('an unauthenticated caller is 401 invalid_client', async (t) => {
  const token = await accessToken(app, owner)
  assertOAuthError(t, await oauthPost(app, INTROSPECT, { fields: { token } }), 401, 'invalid_client')
})

t.test('a caller with a bad Bearer token or a wrong secret is 401 invalid_client', async (t) => {
  const token = await accessToken(app, owner)
  assertOAuthError(t, await oauthPost(app, INTROSPECT, { fields: { token }, headers: { authorization: 'Bearer not.a.token' } }), 401, 'invalid_client')
  const wrongSecret = await oauthPost(app, INTROSPECT, { fields: { token }, headers: { authorization: basic(reader.agentId, 'sk_live_wrong') } })
  assertOAuthError(t, wrongSecret, 401, 'invalid_client')
  t.match(wrongSecret.headers['www-authenticate'], /^Basic /)
})

t.test('a missing token parameter is invalid_request', async (t) => {
  assertOAuthError(t, await oauthPost(app, INTROSPECT, { headers: admin.headers }), 400, 'invalid_request')
})
