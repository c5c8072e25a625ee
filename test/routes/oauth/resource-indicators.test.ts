import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { agentBody, build, ISSUER, RESOURCE_METADATA } from '../../helper.js'
import {
  accessToken, assertOAuthError, auditRows, basic, bootstrapClient, decodeToken, introspect, INTROSPECT, oauthPost, registerClient,
  requestToken, TOKEN, type Client
} from './support.js'
import { ownAssertion, putKeys, signingKey, tokenByGrant, tokenWithAssertion } from '../../support/assertions.js'

/**
 * RFC 8707 resource indicators against each agent's `audiences`: a `resource` (or, for a token
 * exchange, `audience`) must be the issuer or one of the client agent's audiences, https (http
 * only for a loopback host), absolute and without a fragment; anything else is invalid_target,
 * audited. Several `resource` values give an array `aud`; the management API takes a token only
 * when its audience is, or includes, ISSUER_URL.
 */

const env = { RATE_LIMIT_AUTH_FAILURES_PER_IP: '0', RATE_LIMIT_TOKEN_PER_CLIENT: '0' }
const app = await build(t, { env })
const admin = await bootstrapClient(app)
const jsonAdmin = { ...admin.headers, 'content-type': 'application/json' }

const ORDERS = 'https://api.example.com/orders'
const BILLING = 'https://billing.example.com/'

type Agent = Client & { capabilities: string[] }
async function agent (audiences: string[] = [], capabilities = ['docs:read', 'agents:read']): Promise<Agent> {
  return await registerClient(app, admin.headers, { capabilities, audiences })
}
async function setAudiences (agentId: string, audiences: string[]): Promise<void> {
  const res = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agentId}`, headers: jsonAdmin, payload: { audiences } })
  if (res.statusCode !== 200) throw new Error(`PATCH audiences: ${res.statusCode} ${res.body}`)
}
/** The form with `resource` repeated (RFC 8707 §2), which an object can't say. */
async function withResources (client: Agent, resources: string[], extra = ''): Promise<LightMyRequestResponse> {
  const rawForm = ['grant_type=client_credentials', ...resources.map((resource) => `resource=${encodeURIComponent(resource)}`)].join('&') + extra
  return await oauthPost(app, TOKEN, { rawForm, headers: { authorization: basic(client.agentId, client.secret) } })
}
const targetRefusals = async (agentId: string) =>
  (await auditRows(app, 'access.denied', { agentId })).filter((row) => row.metadata.reason === 'invalid_target')
const management = async (token: string) =>
  await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${token}` } })

t.test('no resource: aud is ISSUER_URL, and the token works on the management API', async (t) => {
  const client = await agent([ORDERS])
  const token = await accessToken(app, client)
  t.equal(decodeToken(token).payload.aud, ISSUER)
  t.equal((await management(token)).statusCode, 200)
})

t.test('ISSUER_URL as resource is always allowed (it is the default audience), listed or not', async (t) => {
  const client = await agent()
  const token = await accessToken(app, client, { fields: { resource: ISSUER } })
  t.equal(decodeToken(token).payload.aud, ISSUER)
})

t.test('a resource among the agent\'s audiences becomes aud; the issuance event records it', async (t) => {
  const client = await agent([ORDERS, BILLING])
  const token = await accessToken(app, client, { fields: { resource: ORDERS } })
  const { payload } = decodeToken(token)
  t.equal(payload.aud, ORDERS)
  const issued = (await auditRows(app, 'token.issued', { agentId: client.agentId })).find((row) => row.metadata.jti === payload.jti)
  t.equal(issued?.metadata.audience, ORDERS, 'token.issued names the audience')
  t.equal((await management(token)).statusCode, 401, 'not a token for the management API')
})

t.test('a resource outside the agent\'s audiences is invalid_target, audited as access.denied (invalid_target), and issues nothing', async (t) => {
  const client = await agent([ORDERS])
  const before = (await auditRows(app, 'token.issued', { agentId: client.agentId })).length
  for (const json of [false, true]) {
    const res = await requestToken(app, client, { json, fields: { resource: 'https://elsewhere.example/orders' } })
    assertOAuthError(t, res, 400, 'invalid_target')
  }
  const refusals = await targetRefusals(client.agentId)
  t.equal(refusals.length, 2, 'one access.denied event per refusal')
  t.match(refusals[0].metadata, { reason: 'invalid_target', actorId: client.agentId, target: 'https://elsewhere.example/orders', endpoint: String })
  t.equal((await auditRows(app, 'token.issued', { agentId: client.agentId })).length, before, 'no token issued')
  // a prefix, another case or a trailing slash is another URI: compared exactly as registered
  for (const near of [`${ORDERS}/`, 'https://api.example.com/', 'https://API.example.com/orders', `${ORDERS}?x=1`]) {
    assertOAuthError(t, await requestToken(app, client, { fields: { resource: near } }), 400, 'invalid_target')
  }
})

t.test('http for a host that is not loopback can be neither an audience (registration and PATCH: 400) nor a resource (invalid_target)', async (t) => {
  for (const audience of ['http://rs.example/api', 'http://10.0.0.7/api', 'ftp://rs.example/', 'https://rs.example/#top']) {
    const created = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: jsonAdmin, payload: agentBody({ audiences: [audience] }) })
    t.equal(created.statusCode, 400, `registration with ${audience}`)
    t.match(created.json(), { code: 'VALIDATION_ERROR', errors: [{ field: /audiences/ }] }, `${audience}: names the field`)
  }
  const client = await agent([ORDERS])
  const patched = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${client.agentId}`, headers: jsonAdmin, payload: { audiences: [ORDERS, 'http://rs.example/api'] } })
  t.equal(patched.statusCode, 400, 'PATCH with an http audience')
  t.match(patched.json().errors, [{ field: 'body.audiences[1]' }])
  const body = assertOAuthError(t, await requestToken(app, client, { fields: { resource: 'http://rs.example/api' } }), 400, 'invalid_target')
  t.match(body.error_description, /https/)
  t.equal((await targetRefusals(client.agentId)).length, 1, 'audited')
})

t.test('http is allowed for a loopback host (127.0.0.0/8, [::1], localhost) when listed', async (t) => {
  const loopback = ['http://127.0.0.1:8080/mcp', 'http://127.8.9.10/', 'http://[::1]:7000/api', 'http://localhost:9000/']
  const client = await agent(loopback)
  for (const resource of loopback) {
    const res = await requestToken(app, client, { fields: { resource } })
    t.equal(res.statusCode, 200, `${resource}: ${res.body}`)
    t.equal(decodeToken(res.json().access_token).payload.aud, resource)
  }
  assertOAuthError(t, await requestToken(app, client, { fields: { resource: 'http://127.0.0.1:8081/mcp' } }), 400, 'invalid_target')
  assertOAuthError(t, await requestToken(app, client, { fields: { resource: 'http://localhost.example/' } }), 400, 'invalid_target')
})

t.test('a relative URI, a bare host or a fragment is invalid_target (RFC 8707 §2), audited', async (t) => {
  const client = await agent([ORDERS])
  for (const resource of ['/api/orders', 'api.example.com/orders', `${ORDERS}#section`, `${ORDERS}#`]) {
    assertOAuthError(t, await requestToken(app, client, { fields: { resource } }), 400, 'invalid_target')
  }
  t.equal((await targetRefusals(client.agentId)).length, 4)
})

t.test('several resources, all allowed: aud is their array (a repeated form parameter or a JSON array); introspection shows it', async (t) => {
  const client = await agent([ORDERS, BILLING])
  const form = await withResources(client, [ORDERS, BILLING])
  t.equal(form.statusCode, 200, form.body)
  const token = form.json().access_token as string
  t.same(decodeToken(token).payload.aud, [ORDERS, BILLING])
  const intro = await introspect(app, token, admin)
  t.equal(intro.active, true)
  t.same(intro.aud, [ORDERS, BILLING], 'introspection returns the array')
  const issued = (await auditRows(app, 'token.issued', { agentId: client.agentId })).find((row) => row.metadata.jti === decodeToken(token).payload.jti)
  t.same(issued?.metadata.audience, [ORDERS, BILLING], 'token.issued names every audience')

  const json = await requestToken(app, client, { json: true, rawForm: JSON.stringify({ grant_type: 'client_credentials', resource: [BILLING, ORDERS] }) })
  t.equal(json.statusCode, 200, json.body)
  t.same(decodeToken(json.json().access_token).payload.aud, [BILLING, ORDERS], 'in the order asked for')
})

t.test('several resources, one not allowed: invalid_target for the whole request, audited with the one refused', async (t) => {
  const client = await agent([ORDERS])
  assertOAuthError(t, await withResources(client, [ORDERS, BILLING]), 400, 'invalid_target')
  t.match((await targetRefusals(client.agentId)).map((row) => row.metadata.target), [BILLING])
})

t.test('the same resource twice, an empty array, or another parameter repeated is invalid_request; only the token endpoint takes several', async (t) => {
  const client = await agent([ORDERS, BILLING])
  assertOAuthError(t, await withResources(client, [ORDERS, ORDERS]), 400, 'invalid_request')
  assertOAuthError(t, await requestToken(app, client, { json: true, rawForm: JSON.stringify({ grant_type: 'client_credentials', resource: [] }) }), 400, 'invalid_request')
  assertOAuthError(t, await withResources(client, [ORDERS], '&scope=docs:read&scope=agents:read'), 400, 'invalid_request')
  const token = await accessToken(app, client)
  assertOAuthError(t, await oauthPost(app, INTROSPECT, {
    rawForm: `token=${token}&resource=${encodeURIComponent(ORDERS)}&resource=${encodeURIComponent(BILLING)}`,
    headers: admin.headers
  }), 400, 'invalid_request')
})

t.test('an array aud including ISSUER_URL works on the management API; one without it is refused there (401, with resource_metadata)', async (t) => {
  const client = await agent([ORDERS])
  const both = await withResources(client, [ORDERS, ISSUER])
  t.equal(both.statusCode, 200, both.body)
  const withIssuer = both.json().access_token as string
  t.same(decodeToken(withIssuer).payload.aud, [ORDERS, ISSUER])
  t.equal((await management(withIssuer)).statusCode, 200, 'aud includes ISSUER_URL')

  await setAudiences(client.agentId, [ORDERS, BILLING])
  const without = await withResources(client, [ORDERS, BILLING])
  t.equal(without.statusCode, 200, without.body)
  const refused = await management(without.json().access_token)
  t.equal(refused.statusCode, 401, refused.body)
  t.equal(refused.headers['www-authenticate'],
    `Bearer error="invalid_token", error_description="the access token is not meant for this API", resource_metadata="${RESOURCE_METADATA}"`)
})

t.test('a PATCH of audiences applies to the next token request at once (the cached client is forgotten)', async (t) => {
  const client = await agent([])
  assertOAuthError(t, await requestToken(app, client, { fields: { resource: ORDERS } }), 400, 'invalid_target')
  await setAudiences(client.agentId, [ORDERS])
  const granted = await requestToken(app, client, { fields: { resource: ORDERS } })
  t.equal(granted.statusCode, 200, granted.body)
  await setAudiences(client.agentId, [])
  assertOAuthError(t, await requestToken(app, client, { fields: { resource: ORDERS } }), 400, 'invalid_target')
})

t.test('private_key_jwt and the jwt-bearer grant read the agent\'s audiences too', async (t) => {
  const key = await signingKey('ES256')
  const client = await agent([ORDERS])
  const put = await putKeys(app, admin.headers, client.agentId, { jwks: { keys: [key.publicJwk] } })
  t.equal(put.statusCode, 200, put.body)
  for (const [label, send] of [['private_key_jwt', tokenWithAssertion], ['jwt-bearer', tokenByGrant]] as const) {
    const ok = await send(app, await ownAssertion(client.agentId, key), { resource: ORDERS })
    t.equal(ok.statusCode, 200, `${label}: ${ok.body}`)
    t.equal(decodeToken(ok.json().access_token).payload.aud, ORDERS)
    assertOAuthError(t, await send(app, await ownAssertion(client.agentId, key), { resource: BILLING }), 400, 'invalid_target')
  }
})

t.test('token exchange: the acting agent\'s audiences decide, not the subject\'s', async (t) => {
  const subject = await agent([BILLING])
  const actor = await agent([ORDERS])
  const mayAct = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${subject.agentId}`, headers: jsonAdmin, payload: { mayAct: [actor.agentId] } })
  t.equal(mayAct.statusCode, 200, mayAct.body)
  const subjectToken = await accessToken(app, subject)
  const exchange = async (fields: Record<string, string>) => await oauthPost(app, TOKEN, {
    fields: { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: subjectToken, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', ...fields },
    headers: { authorization: basic(actor.agentId, actor.secret) }
  })

  for (const parameter of ['audience', 'resource']) {
    assertOAuthError(t, await exchange({ [parameter]: BILLING }), 400, 'invalid_target')
    const ok = await exchange({ [parameter]: ORDERS })
    t.equal(ok.statusCode, 200, `${parameter}: ${ok.body}`)
    t.equal(decodeToken(ok.json().access_token).payload.aud, ORDERS, `${parameter} in the actor's list becomes aud`)
  }
  const refusals = await targetRefusals(actor.agentId)
  t.equal(refusals.length, 2, 'audited against the actor')
  t.match(refusals[0].metadata, { reason: 'invalid_target', actorId: actor.agentId, target: BILLING })
  assertOAuthError(t, await exchange({ audience: 'http://rs.example/' }), 400, 'invalid_target')
})
