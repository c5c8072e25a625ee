import t from 'tap'
import { createLocalJWKSet, jwtVerify } from 'jose'
import { build, ISSUER, seedAdmin } from '../../helper.js'
import {
  accessToken, allAuditText, auditRows, basic, decodeToken, introspect, JWKS, registerClient, requestToken
} from './support.js'


const app = await build(t)
const admin = await seedAdmin(app)
// the resource the RFC 8707 test asks for is one of its audiences (a resource outside them is invalid_target: resource-indicators.test.ts)
const client = await registerClient(app, admin.headers, { capabilities: ['docs:read', 'docs:write'], audiences: ['https://api.example.com/orders'] })

t.test('client_secret_basic with a form body: 200 {access_token, token_type, expires_in, scope} and Cache-Control: no-store', async (t) => {
  const res = await requestToken(app, client)

  t.equal(res.statusCode, 200, res.body)
  t.match(res.headers['content-type'], /^application\/json/)
  t.equal(res.headers['cache-control'], 'no-store')
  const body = res.json()
  t.same(Object.keys(body).sort(), ['access_token', 'expires_in', 'scope', 'token_type'])
  t.equal(body.token_type, 'Bearer')
  t.equal(body.expires_in, 3600)
  t.equal(body.scope, 'docs:read docs:write')
  t.match(body.access_token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a compact JWS')
})

t.test('client_secret_basic credentials are form-urlencoded before base64 (RFC 6749 §2.3.1): fully percent-encoded ones work', async (t) => {
  const percentEncodeAll = (value: string) => [...Buffer.from(value)].map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`).join('')
  const res = await requestToken(app, client, { auth: 'none', headers: { authorization: basic(client.agentId, client.secret, percentEncodeAll) } })
  t.equal(res.statusCode, 200, res.body)
  t.equal(decodeToken(res.json().access_token).payload.sub, client.agentId)
})

t.test('client_secret_post in a form body obtains a token', async (t) => {
  const res = await requestToken(app, client, { auth: 'post' })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.headers['cache-control'], 'no-store')
  t.equal(decodeToken(res.json().access_token).payload.client_id, client.agentId)
})

t.test('a JSON body is accepted as well, with client_secret_post and with client_secret_basic', async (t) => {
  const post = await requestToken(app, client, { auth: 'post', json: true })
  const viaBasic = await requestToken(app, client, { json: true, fields: { scope: 'docs:read' } })
  t.equal(post.statusCode, 200, post.body)
  t.equal(viaBasic.statusCode, 200, viaBasic.body)
  t.equal(viaBasic.json().scope, 'docs:read')
})

t.test('form parameters sent without a value count as omitted (RFC 6749 §3.2), as Swagger UI sends them', async (t) => {
  const res = await requestToken(app, client, { fields: { scope: '', resource: '', client_id: '', client_secret: '' } })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().scope, 'docs:read docs:write', 'an empty scope is no scope: every capability')
  t.equal(decodeToken(res.json().access_token).payload.aud, ISSUER, 'an empty resource is no resource')
  const noGrant = await requestToken(app, client, { fields: { grant_type: '' } })
  t.equal(noGrant.statusCode, 400)
  t.equal(noGrant.json().error, 'invalid_request', 'an empty grant_type is a missing one')
})

t.test('without scope the token carries every capability of the agent', async (t) => {
  const res = await requestToken(app, client)
  t.equal(res.json().scope, 'docs:read docs:write')
  t.equal(decodeToken(res.json().access_token).payload.scope, 'docs:read docs:write')
})

t.test('a scope that is a subset of the capabilities is granted exactly, in the response and the token', async (t) => {
  const res = await requestToken(app, client, { fields: { scope: 'docs:write' } })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().scope, 'docs:write')
  t.equal(decodeToken(res.json().access_token).payload.scope, 'docs:write')
})

t.test('resource (RFC 8707) becomes aud; such a token is not accepted by the management API, whose audience is ISSUER_URL', async (t) => {
  const resource = 'https://api.example.com/orders'
  const token = await accessToken(app, client, { fields: { resource } })
  t.equal(decodeToken(token).payload.aud, resource)

  const intro = await introspect(app, token, admin)
  t.equal(intro.active, true, 'a resource server may introspect it')
  t.equal(intro.aud, resource)
  const management = await app.inject({ method: 'GET', url: `/api/v1/agents/${client.agentId}`, headers: { authorization: `Bearer ${token}` } })
  t.equal(management.statusCode, 401, management.body)
})

t.test('without resource aud is ISSUER_URL and the token works on the management API', async (t) => {
  const token = await accessToken(app, client)
  t.equal(decodeToken(token).payload.aud, ISSUER)
  const self = await app.inject({ method: 'GET', url: `/api/v1/agents/${client.agentId}`, headers: { authorization: `Bearer ${token}` } })
  t.equal(self.statusCode, 200, self.body)
})

t.test('the token header is {alg: RS256, typ: at+jwt, kid} with the kid the JWKS publishes, and the JWKS verifies it', async (t) => {
  const token = await accessToken(app, client)
  const { header } = decodeToken(token)
  const jwks = (await app.inject({ method: 'GET', url: JWKS })).json()

  t.same(header, { alg: 'RS256', typ: 'at+jwt', kid: jwks.keys[0].kid })
  t.equal(jwks.keys.length, 1, 'one key without additional keys configured')
  const verified = await jwtVerify(token, createLocalJWKSet(jwks), { issuer: ISSUER, audience: ISSUER, typ: 'at+jwt', algorithms: ['RS256'] })
  t.equal(verified.payload.sub, client.agentId)
})

t.test('the claims are iss, sub, client_id, aud, iat, exp = iat + 3600, jti and scope', async (t) => {
  const before = Math.floor(Date.now() / 1000)
  const token = await accessToken(app, client, { fields: { scope: 'docs:read' } })
  const after = Math.ceil(Date.now() / 1000)
  const { payload } = decodeToken(token)

  t.equal(payload.iss, ISSUER)
  t.equal(payload.sub, client.agentId)
  t.equal(payload.client_id, client.agentId)
  t.equal(payload.aud, ISSUER)
  t.ok(typeof payload.iat === 'number' && payload.iat >= before - 1 && payload.iat <= after, `iat is now (${String(payload.iat)})`)
  t.equal(payload.exp, (payload.iat as number) + 3600)
  t.match(payload.jti, /^[A-Za-z0-9_-]{43}$/, 'an opaque base64url id (credential id and 128 random bits)')
  t.equal(payload.scope, 'docs:read')
  t.notOk(JSON.stringify(payload).includes(client.secret), 'the secret is not in the token')
})

t.test('every token gets its own jti', async (t) => {
  const tokens = await Promise.all(Array.from({ length: 6 }, () => accessToken(app, client)))
  const jtis = new Set(tokens.map((token) => decodeToken(token).payload.jti))
  t.equal(jtis.size, 6)
})

t.test('each issuance writes exactly one token.issued audit event carrying its jti and no secret or token', async (t) => {
  const tokens = [await accessToken(app, client), await accessToken(app, client, { auth: 'post' }), await accessToken(app, client, { json: true })]
  for (const token of tokens) {
    const jti = decodeToken(token).payload.jti as string
    const rows = await auditRows(app, 'token.issued', { metadataKey: 'jti', metadataValue: jti })
    t.equal(rows.length, 1, `one token.issued for ${jti}`)
    t.match(rows[0], { agent_id: client.agentId, outcome: 'success' })
  }
  const audit = await allAuditText(app)
  t.notOk(audit.includes(client.secret), 'no audit row holds the secret')
  t.notOk(audit.includes('sk_live_'), 'no audit row holds anything shaped like a secret')
  for (const token of tokens) t.notOk(audit.includes(token), 'no audit row holds the token')
})

t.test('token.issued events are one per token: as many events as tokens issued to the agent', async (t) => {
  const fresh = await registerClient(app, admin.headers)
  for (let i = 0; i < 4; i += 1) await accessToken(app, fresh)
  t.equal((await auditRows(app, 'token.issued', { agentId: fresh.agentId })).length, 4)
})
