import { randomUUID } from 'node:crypto'
import t from 'tap'
import type { InjectOptions, LightMyRequestResponse } from 'fastify'
import { build, LogCapture } from '../helper.js'
import { startPrivateRedis } from '../support/private-services.js'
import { generateSecret } from '../../services/secrets.js'
import { AGENTS, INTROSPECT, REVOKE, TOKEN, basic, bootstrap, signatureOf, withDb } from '../support/oauth-flow.js'
import { ath, CLIENT_ASSERTION_TYPE, dpopProof, JWT_BEARER, ownAssertion, signingKey } from '../support/assertions.js'

/**
 * A whole session of the IdP — bootstrap, every way of asking for a token, wrong secrets, a secret
 * in a query string, introspection, revocation, credential generation and rotation, management
 * calls, a dependency outage (5xx) — with every log line captured at level info. Afterwards no
 * client secret, access token, token signature or Authorization header value may appear in any log
 * line, any audit row or any error response; every request is logged under its request id.
 */

const logs = new LogCapture()
// a private Redis, so the 5xx at the end (Redis down) never touches the shared one
const redis = await startPrivateRedis(t)
const app = await build(t, { logStream: logs, env: { REDIS_URL: redis.url } })

/** Every value that must never be written anywhere but the one response that hands it out. */
const sensitive = new Set<string>()
const errorResponses: string[] = []
const responses: Array<{ label: string, res: LightMyRequestResponse }> = []

function keep (...values: string[]): void {
  for (const value of values) sensitive.add(value)
}

function keepToken (token: string): void {
  keep(token, signatureOf(token), `Bearer ${token}`)
}

const USER_AGENT = 'secret-scan/1.0 (+https://example.test)'
// on every request, so that the scan covers the trace field of the completion lines too
const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'

/** app.inject, remembering the Authorization header as sensitive and every error response for the scan. */
async function call (label: string, options: Omit<InjectOptions, 'headers'> & { headers?: Record<string, string> }): Promise<LightMyRequestResponse> {
  const headers: Record<string, string> = { 'user-agent': USER_AGENT, traceparent: TRACEPARENT, ...options.headers }
  if (headers.authorization !== undefined) keep(headers.authorization, headers.authorization.replace(/^\S+ +/, ''))
  const res = await app.inject({ ...options, headers })
  responses.push({ label, res })
  if (res.statusCode >= 400) errorResponses.push(`${label}: ${JSON.stringify(res.headers)} ${res.body}`)
  return res
}

/** A form-encoded POST to `url`, optionally with an Authorization header. */
function formPost (url: string, values: Record<string, string>, authorization?: string) {
  return {
    method: 'POST' as const,
    url,
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...(authorization === undefined ? {} : { authorization }) },
    payload: new URLSearchParams(values).toString()
  }
}

const GRANT = { grant_type: 'client_credentials' }

function accessToken (res: LightMyRequestResponse): string {
  const token = (res.json() as { access_token?: string }).access_token
  if (token === undefined) throw new Error(`no token: ${res.statusCode} ${res.body}`)
  keepToken(token)
  return token
}

const GIVEN_REQUEST_ID = 'flow-given-id-42'
let givenIdResponse: LightMyRequestResponse
let malformedIdResponse: LightMyRequestResponse

t.test('a whole session runs as expected (the scan below is only as good as the flow)', async (t) => {
  const admin = await bootstrap(app.databaseUrl)
  keep(admin.clientSecret)
  const basicAdmin = basic(admin.clientId, admin.clientSecret)

  // tokens by every client authentication method and body encoding
  const byBasic = await call('token, client_secret_basic', formPost(TOKEN, GRANT, basicAdmin))
  t.equal(byBasic.statusCode, 200, 'token by client_secret_basic')
  const adminToken = accessToken(byBasic)
  const byPostForm = await call('token, client_secret_post form', formPost(TOKEN, { ...GRANT, client_id: admin.clientId, client_secret: admin.clientSecret }))
  t.equal(byPostForm.statusCode, 200, 'token by client_secret_post (form)')
  const formToken = accessToken(byPostForm)
  const byPostJson = await call('token, client_secret_post JSON', { method: 'POST', url: TOKEN, payload: { ...GRANT, client_id: admin.clientId, client_secret: admin.clientSecret } })
  t.equal(byPostJson.statusCode, 200, 'token by client_secret_post (JSON)')
  const jsonToken = accessToken(byPostJson)

  // wrong secrets of every kind
  const wrongSecret = admin.clientSecret.slice(0, -6) + (admin.clientSecret.endsWith('AAAAAA') ? 'BBBBBB' : 'AAAAAA')
  const unknownSecret = generateSecret(randomUUID())
  keep(wrongSecret, unknownSecret)
  const wrongBasic = await call('wrong secret, Basic', formPost(TOKEN, GRANT, basic(admin.clientId, wrongSecret)))
  t.equal(wrongBasic.statusCode, 401, 'a wrong secret by Basic is refused')
  const wrongPost = await call('wrong secret, post', { method: 'POST', url: TOKEN, payload: { ...GRANT, client_id: admin.clientId, client_secret: wrongSecret } })
  t.equal(wrongPost.statusCode, 401, 'a wrong secret by post is refused')
  const unknownClient = await call('unknown client', formPost(TOKEN, { ...GRANT, client_id: randomUUID(), client_secret: unknownSecret }))
  t.equal(unknownClient.statusCode, 401, 'an unknown client is refused')
  const both = await call('Basic and post at once', formPost(TOKEN, { ...GRANT, client_id: admin.clientId, client_secret: admin.clientSecret }, basicAdmin))
  t.equal(both.statusCode, 400, 'credentials in header and body are refused')
  const extraField = await call('secret in an unknown field', { method: 'POST', url: TOKEN, payload: { ...GRANT, client_id: admin.clientId, client_secret: admin.clientSecret, password: admin.clientSecret } })
  t.equal(extraField.statusCode, 400, 'an unknown field carrying a secret is refused')

  // secrets and tokens where they do not belong: the query string
  const query = new URLSearchParams({ client_id: admin.clientId, client_secret: admin.clientSecret }).toString()
  const inQuery = await call('secret in the query string', formPost(`${TOKEN}?${query}`, GRANT))
  t.equal(inQuery.statusCode, 401, 'a secret in the query string is not accepted')
  const tokenInQuery = await call('token in the query string', { method: 'GET', url: `${AGENTS}?access_token=${adminToken}` })
  t.equal(tokenInQuery.statusCode, 401, 'a token in the query string is not accepted')

  // introspection by Bearer and by client credentials
  const introspected = await call('introspection, Bearer', { method: 'POST', url: INTROSPECT, headers: { authorization: `Bearer ${adminToken}` }, payload: { token: formToken } })
  t.equal(introspected.json<{ active: boolean }>().active, true, 'introspection by Bearer')
  const introspectedByClient = await call('introspection, client', formPost(INTROSPECT, { token: jsonToken }, basicAdmin))
  t.equal(introspectedByClient.json<{ active: boolean }>().active, true, 'introspection by client credentials')
  const garbage = `${adminToken.slice(0, -10)}AAAAAAAAAA`
  keepToken(garbage)
  const introspectedGarbage = await call('introspection of a forged token', { method: 'POST', url: INTROSPECT, headers: { authorization: `Bearer ${adminToken}` }, payload: { token: garbage } })
  t.same(introspectedGarbage.json(), { active: false }, 'a forged token is inactive')

  // management calls with the Bearer token, a forged token, a secret in an unknown field
  const bearerAdmin = { authorization: `Bearer ${adminToken}` }
  const newAgent = { agentType: 'router', version: '1.0.0', capabilities: ['docs:read'], owner: 'scan', deploymentEnv: 'staging' }
  const created = await call('create agent', {
    method: 'POST', url: AGENTS, headers: bearerAdmin, payload: { ...newAgent, email: `scan-${randomUUID().slice(0, 8)}@example.com` }
  })
  t.equal(created.statusCode, 201, 'agent created')
  const agentId = created.json<{ agentId: string }>().agentId
  t.equal((await call('list agents', { method: 'GET', url: AGENTS, headers: bearerAdmin })).statusCode, 200, 'agents listed')
  t.equal((await call('update agent', { method: 'PATCH', url: `${AGENTS}/${agentId}`, headers: bearerAdmin, payload: { version: '1.1.0' } })).statusCode, 200, 'agent updated')
  t.equal((await call('unknown agent', { method: 'GET', url: `${AGENTS}/${randomUUID()}`, headers: bearerAdmin })).statusCode, 404, 'unknown agent')
  t.equal((await call('forged token', { method: 'GET', url: AGENTS, headers: { authorization: `Bearer ${garbage}` } })).statusCode, 401, 'a forged token is refused')
  const leakyBody = await call('secret in an unknown management field', {
    method: 'POST', url: AGENTS, headers: bearerAdmin, payload: { ...newAgent, email: 'leak@example.com', clientSecret: admin.clientSecret }
  })
  t.equal(leakyBody.statusCode, 400, 'an unknown field carrying a secret is refused')

  // credentials: generate, use, rotate, use the old and the new secret
  const generated = await call('generate credential', { method: 'POST', url: `${AGENTS}/${agentId}/credentials`, headers: bearerAdmin })
  t.equal(generated.statusCode, 201, 'credential generated')
  const { credentialId, clientSecret: firstSecret } = generated.json<{ credentialId: string, clientSecret: string }>()
  keep(firstSecret)
  const agentToken = accessToken(await call('agent token', formPost(TOKEN, GRANT, basic(agentId, firstSecret))))
  const rotated = await call('rotate credential', { method: 'POST', url: `${AGENTS}/${agentId}/credentials/${credentialId}/rotate`, headers: bearerAdmin })
  t.equal(rotated.statusCode, 200, 'credential rotated')
  const secondSecret = rotated.json<{ clientSecret: string }>().clientSecret
  keep(secondSecret)
  const oldSecret = await call('old secret after rotation', { method: 'POST', url: TOKEN, payload: { ...GRANT, client_id: agentId, client_secret: firstSecret } })
  t.equal(oldSecret.statusCode, 401, 'the old secret is refused after rotation')
  const basicAgent = basic(agentId, secondSecret)
  const secondToken = accessToken(await call('token with the new secret', formPost(TOKEN, GRANT, basicAgent)))
  t.equal((await call('self read', { method: 'GET', url: `${AGENTS}/${agentId}`, headers: { authorization: `Bearer ${secondToken}` } })).statusCode, 200, 'self-service read')

  // token exchange: the agent acts for the admin; the subject token travels in the body (issue 15)
  t.equal((await call('let the agent read agents', { method: 'PATCH', url: `${AGENTS}/${agentId}`, headers: bearerAdmin, payload: { capabilities: ['docs:read', 'agents:read'] } })).statusCode, 200, 'capability granted')
  t.equal((await call('allow the agent to act for the admin', { method: 'PATCH', url: `${AGENTS}/${admin.clientId}`, headers: bearerAdmin, payload: { mayAct: [agentId] } })).statusCode, 200, 'mayAct set')
  const EXCHANGE = { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token_type: 'urn:ietf:params:oauth:token-type:access_token' }
  const delegated = accessToken(await call('token exchange', formPost(TOKEN, { ...EXCHANGE, subject_token: jsonToken, scope: 'agents:read' }, basicAgent)))
  t.equal((await call('delegated read', { method: 'GET', url: AGENTS, headers: { authorization: `Bearer ${delegated}` } })).statusCode, 200, 'the delegated token works')
  t.equal((await call('exchange of a forged subject token', formPost(TOKEN, { ...EXCHANGE, subject_token: garbage }, basicAgent))).statusCode, 400, 'a forged subject token is refused')
  t.equal((await call('exchange with an actor token of another agent', formPost(TOKEN, { ...EXCHANGE, subject_token: jsonToken, actor_token: formToken, actor_token_type: EXCHANGE.subject_token_type }, basicAgent))).statusCode, 400, 'another agent\'s actor token is refused')

  // agents without secrets (issue 16): client assertions and the jwt-bearer grant carry signed JWTs
  const key = await signingKey('ES256')
  t.equal((await call('register the agent\'s key', { method: 'PUT', url: `${AGENTS}/${agentId}/jwks`, headers: bearerAdmin, payload: { jwks: { keys: [key.publicJwk] } } })).statusCode, 200, 'key registered')
  const assertion = await ownAssertion(agentId, key)
  const otherAssertion = await ownAssertion(agentId, key)
  const forged = await ownAssertion(agentId, await signingKey('ES256', key.kid))
  keepToken(assertion)
  keepToken(otherAssertion)
  keepToken(forged)
  const byAssertion = { ...GRANT, client_assertion_type: CLIENT_ASSERTION_TYPE }
  accessToken(await call('token by private_key_jwt', formPost(TOKEN, { ...byAssertion, client_assertion: assertion })))
  t.equal((await call('replayed client assertion', formPost(TOKEN, { ...byAssertion, client_assertion: assertion }))).statusCode, 401, 'a replayed assertion is refused')
  t.equal((await call('forged client assertion', formPost(TOKEN, { ...byAssertion, client_assertion: forged }))).statusCode, 401, 'a forged assertion is refused')
  accessToken(await call('token by the jwt-bearer grant', formPost(TOKEN, { grant_type: JWT_BEARER, assertion: otherAssertion })))
  t.equal((await call('replayed grant assertion', formPost(TOKEN, { grant_type: JWT_BEARER, assertion: otherAssertion }))).statusCode, 400, 'a replayed grant assertion is refused')

  // DPoP (issue 17): the proofs and the bound token travel in headers of their own
  const tokenProof = await dpopProof(key, { htm: 'POST', htu: `${app.config.ISSUER_URL}/api/v1/token` })
  keepToken(tokenProof)
  const bound = accessToken(await call('DPoP-bound token', { ...formPost(TOKEN, GRANT, basicAgent), headers: { ...formPost(TOKEN, GRANT, basicAgent).headers, dpop: tokenProof } }))
  const readProof = await dpopProof(key, { htm: 'GET', htu: `${app.config.ISSUER_URL}${AGENTS}/${agentId}`, ath: ath(bound) })
  keepToken(readProof)
  t.equal((await call('read with a DPoP-bound token', { method: 'GET', url: `${AGENTS}/${agentId}`, headers: { authorization: `DPoP ${bound}`, dpop: readProof } })).statusCode, 200, 'the bound token works with its proof')
  t.equal((await call('DPoP-bound token as Bearer', { method: 'GET', url: `${AGENTS}/${agentId}`, headers: { authorization: `Bearer ${bound}` } })).statusCode, 401, 'and is refused as Bearer')
  t.equal((await call('replayed DPoP proof', { method: 'GET', url: `${AGENTS}/${agentId}`, headers: { authorization: `DPoP ${bound}`, dpop: readProof } })).statusCode, 401, 'a replayed proof is refused')

  // revocation: own token, then another client's token (refused)
  t.equal((await call('revoke own token', formPost(REVOKE, { token: agentToken }, basicAgent))).statusCode, 200, 'own token revoked')
  t.equal((await call('revoked token used', { method: 'GET', url: `${AGENTS}/${agentId}`, headers: { authorization: `Bearer ${agentToken}` } })).statusCode, 401, 'the revoked token is refused')
  const foreign = await call('revoke another client\'s token', { method: 'POST', url: REVOKE, payload: { token: formToken, client_id: agentId, client_secret: secondSecret } })
  t.equal(foreign.statusCode, 400, 'another client\'s token is not revoked')
  t.equal((await call('revoke credential', { method: 'DELETE', url: `${AGENTS}/${agentId}/credentials/${credentialId}`, headers: bearerAdmin })).statusCode, 204, 'credential revoked')
  t.equal((await call('revoked credential used', formPost(TOKEN, GRANT, basicAgent))).statusCode, 401, 'the revoked credential is refused')

  // the caller's request id
  givenIdResponse = await call('given request id', { method: 'GET', url: AGENTS, headers: { ...bearerAdmin, 'x-request-id': GIVEN_REQUEST_ID } })
  malformedIdResponse = await call('malformed request id', { method: 'GET', url: AGENTS, headers: { ...bearerAdmin, 'x-request-id': 'no spaces {allowed}' } })

  // a 5xx: Redis goes away under the token endpoint
  await redis.stop()
  const outage = await call('token during a Redis outage', formPost(TOKEN, GRANT, basicAdmin))
  t.equal(outage.statusCode, 503, 'a Redis outage answers 503')
  t.ok(logs.lines.some((line) => (JSON.parse(line) as { level: string }).level === 'error'), 'the 5xx was logged at error level')
})

/** The sensitive values found in `text`, shortened so the failure itself leaks nothing useful. */
function leaks (text: string): string[] {
  return [...sensitive].filter((value) => value.length >= 16 && text.includes(value)).map((value) => `${value.slice(0, 12)}…`)
}

t.test('no secret, token, signature or Authorization value appears in any log line', async (t) => {
  t.ok(logs.lines.length > responses.length, `the logs were captured (${logs.lines.length} lines)`)
  t.ok(sensitive.size >= 20, `the scan looks for ${sensitive.size} values`)
  t.same(leaks(logs.text), [], 'no sensitive value in the logs')
  t.notMatch(logs.text, /sk_live_/, 'nothing shaped like a client secret')
  t.notMatch(logs.text, /eyJ[\w-]+\.eyJ[\w-]+\./, 'nothing shaped like a JWT')
  t.notMatch(logs.text, /Basic [A-Za-z0-9+/]{20,}/, 'no Basic credentials')
  t.ok(logs.lines.filter((line) => line.includes(`"traceparent":"${TRACEPARENT}"`)).length >= responses.length,
    'the scanned lines carried the trace field')
})

t.test('no secret, token, signature or Authorization value appears in any audit row', async (t) => {
  const rows = await withDb(app.databaseUrl, async (db) => (await db.query<{ row: string }>(
    `SELECT concat_ws(' | ', action, outcome, agent_id::text, ip_address::text, user_agent, metadata::text) AS row
     FROM audit_events`)).rows.map((row) => row.row))
  t.ok(rows.length >= 20, `the flow was audited (${rows.length} events)`)
  const text = rows.join('\n')
  t.same(leaks(text), [], 'no sensitive value in audit rows')
  t.notMatch(text, /sk_live_/, 'nothing shaped like a client secret')
  t.notMatch(text, /eyJ[\w-]+\.eyJ[\w-]+\./, 'nothing shaped like a JWT')
  t.ok(rows.some((row) => row.includes(USER_AGENT)), 'the user agent is recorded (the scan covers that column)')
})

t.test('no secret, token, signature or Authorization value appears in any error response', async (t) => {
  t.ok(errorResponses.length >= 10, `${errorResponses.length} error responses scanned`)
  t.same(leaks(errorResponses.join('\n')), [], 'no sensitive value in error bodies or headers')
  t.notMatch(errorResponses.join('\n'), /sk_live_|eyJ[\w-]+\.eyJ/, 'nothing shaped like a secret or a JWT')
  const fiveHundreds = errorResponses.filter((entry) => / 5\d\d /.test(entry) || /"status":5\d\d/.test(entry))
  t.notMatch(fiveHundreds.join('\n'), /ioredis|ECONNREFUSED|writeable|at [\w.]+ \(/i, 'a 5xx names no driver, errno or stack')
})

t.test('every request is logged under its request id, and a caller\'s x-request-id is echoed and used', async (t) => {
  const entries = logs.lines.map((line) => JSON.parse(line) as { reqId?: string, msg?: string, statusCode?: number })
  const completed = new Map(entries.filter((entry) => entry.msg === 'request completed' && entry.reqId !== undefined)
    .map((entry) => [entry.reqId as string, entry.statusCode]))
  const unlogged = responses.filter(({ res }) => completed.get(String(res.headers['x-request-id'])) !== res.statusCode)
  t.same(unlogged.map(({ label, res }) => `${label} (${String(res.headers['x-request-id'])})`), [],
    'each response carries an x-request-id under which its completion (and status) was logged')
  t.equal(new Set(responses.map(({ res }) => res.headers['x-request-id'])).size, responses.length, 'request ids are unique')

  t.equal(givenIdResponse.headers['x-request-id'], GIVEN_REQUEST_ID, 'the caller\'s x-request-id is echoed')
  const tagged = entries.filter((entry) => entry.reqId === GIVEN_REQUEST_ID).map((entry) => entry.msg)
  t.same(tagged, ['request completed'], 'the caller\'s id tags the request\'s one log line')
  t.not(malformedIdResponse.headers['x-request-id'], 'no spaces {allowed}', 'a malformed x-request-id is replaced, not echoed')
  t.match(malformedIdResponse.headers['x-request-id'], /^[\w.:-]+$/, 'by a well-formed one')
  t.notOk(logs.text.includes('{allowed}'), 'and it never reaches the logs')
})
