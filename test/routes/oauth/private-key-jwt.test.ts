import { createHash, randomUUID } from 'node:crypto'
import t from 'tap'
import { Redis } from 'ioredis'
import { build, ISSUER, REDIS_URL } from '../../helper.js'
import {
  assertOAuthError, auditRows, basic, bootstrapClient, decodeToken, introspect, oauthPost, registerClient, INTROSPECT, REVOKE, TOKEN
} from './support.js'
import { CLIENT_ASSERTION_TYPE, ownAssertion, putKeys, signingKey, signJwt, tokenByGrant, tokenWithAssertion, type SigningKey } from '../../support/assertions.js'

/**
 * private_key_jwt (RFC 7523 §2.2) and the jwt-bearer grant with an agent's own key (§2.1): keys
 * registered with PUT /api/v1/agents/:agentId/jwks, assertions built with jose, two instances of
 * the server on one PostgreSQL and one Redis.
 */

const env = { RATE_LIMIT_AUTH_FAILURES_PER_IP: '0', RATE_LIMIT_TOKEN_PER_CLIENT: '0' }
const app = await build(t, { env })
const other = await build(t, { env, databaseUrl: app.databaseUrl })
const admin = await bootstrapClient(app)
const redis = new Redis(REDIS_URL)
t.teardown(() => { redis.disconnect() })

const es256 = await signingKey('ES256')
const rs256 = await signingKey('RS256')
const eddsa = await signingKey('EdDSA')

async function agentWithKeys (keys: SigningKey[], overrides: Record<string, unknown> = {}) {
  const agent = await registerClient(app, admin.headers, { capabilities: ['docs:read', 'docs:write'], ...overrides })
  const put = await putKeys(app, admin.headers, agent.agentId, { jwks: { keys: keys.map((key) => key.publicJwk) } })
  if (put.statusCode !== 200) throw new Error(`PUT jwks: ${put.statusCode} ${put.body}`)
  return agent
}

async function keyCredential (agentId: string, key: SigningKey): Promise<string> {
  const { rows } = await app.pg.query<{ credential_id: string }>(
    "SELECT credential_id FROM credentials WHERE client_id = $1 AND kind = 'key' AND key_thumbprint = $2 AND status = 'active'",
    [agentId, await import('jose').then(async ({ calculateJwkThumbprint }) => await calculateJwkThumbprint(key.publicJwk, 'sha256'))])
  return rows[0]?.credential_id
}

const failures = async (agentId: string, reason: string) =>
  (await auditRows(app, 'auth.failed', { agentId })).filter((row) => row.metadata.reason === reason)

t.test('ES256, RS256 and EdDSA keys each sign an assertion that obtains a token whose sub is the agent, recorded with the key that authenticated', async (t) => {
  const agent = await agentWithKeys([es256, rs256, eddsa])
  for (const key of [es256, rs256, eddsa]) {
    const res = await tokenWithAssertion(app, await ownAssertion(agent.agentId, key), { scope: 'docs:read' })
    t.equal(res.statusCode, 200, `${key.alg}: ${res.body}`)
    const { payload } = decodeToken(res.json().access_token)
    t.equal(payload.sub, agent.agentId)
    t.equal(payload.client_id, agent.agentId)
    t.equal(payload.scope, 'docs:read')
    const credentialId = await keyCredential(agent.agentId, key)
    const issued = (await auditRows(app, 'token.issued', { agentId: agent.agentId })).find((row) => row.metadata.jti === payload.jti)
    t.equal(issued?.metadata.authMethod, 'private_key_jwt', `${key.alg}: audited as private_key_jwt`)
    t.equal(issued?.metadata.credentialId, credentialId, `${key.alg}: the key's credential row obtained it`)
    t.equal((await introspect(other, res.json().access_token, admin)).active, true, 'valid on the other instance')
  }
})

t.test('the token endpoint URL is accepted as aud, and client_id may accompany the assertion', async (t) => {
  const agent = await agentWithKeys([es256])
  const res = await tokenWithAssertion(app, await ownAssertion(agent.agentId, es256, { aud: `${ISSUER}/api/v1/token` }), { client_id: agent.agentId })
  t.equal(res.statusCode, 200, res.body)
})

t.test('a jti is single-use: the replay is refused on the same instance and on another one, and audited', async (t) => {
  const agent = await agentWithKeys([es256])
  const assertion = await ownAssertion(agent.agentId, es256)
  t.equal((await tokenWithAssertion(app, assertion)).statusCode, 200)
  assertOAuthError(t, await tokenWithAssertion(app, assertion), 401, 'invalid_client')
  assertOAuthError(t, await tokenWithAssertion(other, assertion), 401, 'invalid_client')
  t.equal((await failures(agent.agentId, 'assertion_replayed')).length, 2)
})

t.test('a jti Redis has forgotten is still refused: the durable record in PostgreSQL decides', async (t) => {
  const agent = await agentWithKeys([es256])
  const jti = randomUUID()
  const assertion = await ownAssertion(agent.agentId, es256, { jti })
  t.equal((await tokenWithAssertion(app, assertion)).statusCode, 200)
  const key = createHash('sha256').update(`${agent.agentId}\n${jti}`).digest('base64url')
  t.equal(await redis.del(`${app.config.CACHE_PREFIX}assertion:${key}`), 1, 'Redis held the claim; now it is gone')
  assertOAuthError(t, await tokenWithAssertion(other, assertion), 401, 'invalid_client')
  t.equal((await failures(agent.agentId, 'assertion_replayed')).length, 1)
  const { rows } = await app.pg.query('SELECT count(*)::int AS n FROM audit_events WHERE action = $1 AND agent_id = $2', ['token.issued', agent.agentId])
  t.equal(rows[0].n, 1, 'one token, one event: the replay left no event behind')
})

t.test('each bad assertion gets the same invalid_client answer and an audit event naming why', async (t) => {
  const agent = await agentWithKeys([es256, rs256])
  const stranger = await signingKey('ES256', es256.kid)
  const now = Math.floor(Date.now() / 1000)
  const unsigned = `${Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url')}.${Buffer.from(JSON.stringify({ iss: agent.agentId, sub: agent.agentId, aud: ISSUER, exp: now + 60, jti: randomUUID() })).toString('base64url')}.`
  const { SignJWT } = await import('jose')
  // HS256 keyed with the registered public key's own text: the classic algorithm confusion
  const hmacWithPublicKey = await new SignJWT({ iss: agent.agentId, sub: agent.agentId, aud: ISSUER, exp: now + 60, jti: randomUUID() })
    .setProtectedHeader({ alg: 'HS256', kid: rs256.kid }).sign(new TextEncoder().encode(JSON.stringify(rs256.publicJwk)))
  const cases: Array<[string, string, string]> = [
    ['wrong aud', await ownAssertion(agent.agentId, es256, { aud: 'https://elsewhere.example' }), 'wrong_aud'],
    ['expired', await ownAssertion(agent.agentId, es256, { iat: now - 600, exp: now - 120 }), 'assertion_expired'],
    ['exp too far ahead', await ownAssertion(agent.agentId, es256, { exp: now + 3600 }), 'exp_too_far_ahead'],
    ['an unregistered key with a registered kid', await ownAssertion(agent.agentId, stranger), 'bad_signature'],
    ['an unregistered kid', await ownAssertion(agent.agentId, await signingKey('ES256')), 'unknown_key'],
    ['alg none', unsigned, 'alg_none'],
    ['HS256 keyed with the public key', hmacWithPublicKey, 'alg_not_allowed'],
    ['RS256 key used with ES256 header alg', await signJwt(es256, { iss: agent.agentId, sub: agent.agentId, aud: ISSUER, exp: now + 60, jti: randomUUID() }, { kid: rs256.kid }), 'unknown_key'],
    ['no jti', await ownAssertion(agent.agentId, es256, { jti: undefined }), 'jti_missing'],
    ['sub other than iss', await ownAssertion(agent.agentId, es256, { sub: admin.agentId }), 'untrusted_issuer']
  ]
  const bodies = new Set<string>()
  for (const [name, assertion, reason] of cases) {
    const res = await tokenWithAssertion(app, assertion)
    assertOAuthError(t, res, 401, 'invalid_client')
    bodies.add(res.body)
    const audited = (await auditRows(app, 'auth.failed')).filter((row) => row.metadata.reason === reason)
    t.ok(audited.length >= 1, `${name}: audited as ${reason}`)
  }
  t.equal(bodies.size, 1, 'one answer, whatever the reason')
  const mismatch = await tokenWithAssertion(app, await ownAssertion(agent.agentId, es256), { client_id: admin.agentId })
  assertOAuthError(t, mismatch, 401, 'invalid_client')
  t.equal((await failures(agent.agentId, 'client_id_mismatch')).length, 1, 'a client_id naming another agent')
  const unknown = randomUUID()
  assertOAuthError(t, await tokenWithAssertion(app, await ownAssertion(unknown, es256)), 401, 'invalid_client')
  t.ok((await auditRows(app, 'auth.failed')).some((row) => row.metadata.reason === 'unknown_client' && row.agent_id === null), 'an unknown agent')
})

t.test('client assertions next to another client authentication, or with a wrong type, are invalid_request', async (t) => {
  const agent = await agentWithKeys([es256])
  const assertion = await ownAssertion(agent.agentId, es256)
  assertOAuthError(t, await oauthPost(app, TOKEN, {
    fields: { grant_type: 'client_credentials', client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: assertion },
    headers: { authorization: basic(agent.agentId, agent.secret) }
  }), 400, 'invalid_request')
  assertOAuthError(t, await tokenWithAssertion(app, assertion, { client_secret: agent.secret, client_id: agent.agentId }), 400, 'invalid_request')
  assertOAuthError(t, await tokenWithAssertion(app, assertion, { client_assertion_type: 'urn:example:other' }), 400, 'invalid_request')
  assertOAuthError(t, await tokenWithAssertion(app, assertion, { client_assertion: undefined }), 400, 'invalid_request')
})

t.test('removing a key stops the tokens it obtained at once, on every instance; a key that stays keeps its tokens', async (t) => {
  const agent = await agentWithKeys([es256, eddsa])
  const byRemoved = (await tokenWithAssertion(app, await ownAssertion(agent.agentId, es256))).json().access_token
  const byKept = (await tokenWithAssertion(app, await ownAssertion(agent.agentId, eddsa))).json().access_token
  const put = await putKeys(app, admin.headers, agent.agentId, { jwks: { keys: [eddsa.publicJwk] } })
  t.equal(put.statusCode, 200, put.body)
  t.same((await introspect(other, byRemoved, admin)), { active: false }, 'the removed key\'s token is dead on the other instance')
  const read = await other.inject({ method: 'GET', url: `/api/v1/agents/${agent.agentId}`, headers: { authorization: `Bearer ${byRemoved}` } })
  t.equal(read.statusCode, 401, 'and refused by the management API')
  t.equal((await introspect(other, byKept, admin)).active, true, 'the kept key\'s token lives')
  assertOAuthError(t, await tokenWithAssertion(other, await ownAssertion(agent.agentId, es256)), 401, 'invalid_client')
  const updates = await auditRows(app, 'agent.keys_updated', { agentId: agent.agentId })
  t.equal(updates.length, 2, 'each PUT is audited')
  t.equal((updates[1].metadata.revokedCredentials as string[]).length, 1, 'the second names the one key row it revoked')
})

t.test('an instance that remembers an agent\'s keys forgets them when another instance changes them: the removed key is refused at once', async (t) => {
  const agent = await agentWithKeys([es256, eddsa])
  // `other` reads the agent and its keys, and remembers them (plugins/client-directory.ts)
  t.equal((await tokenWithAssertion(other, await ownAssertion(agent.agentId, es256))).statusCode, 200)
  t.equal((await tokenWithAssertion(other, await ownAssertion(agent.agentId, es256))).statusCode, 200, 'served from what it remembers')
  t.equal((await putKeys(app, admin.headers, agent.agentId, { jwks: { keys: [eddsa.publicJwk] } })).statusCode, 200)
  assertOAuthError(t, await tokenWithAssertion(other, await ownAssertion(agent.agentId, es256)), 401, 'invalid_client')
  t.equal((await tokenWithAssertion(other, await ownAssertion(agent.agentId, eddsa))).statusCode, 200, 'the key that stays still works there')
})

t.test('authMethods: an agent moved off secrets is refused with its secret, one moved off keys with its key', async (t) => {
  const agent = await agentWithKeys([es256])
  const patch = async (authMethods: string[]) => await app.inject({
    method: 'PATCH', url: `/api/v1/agents/${agent.agentId}`, headers: { ...admin.headers, 'content-type': 'application/json' }, payload: { authMethods }
  })
  t.equal((await patch(['private_key_jwt'])).statusCode, 200)
  assertOAuthError(t, await oauthPost(other, TOKEN, { fields: { grant_type: 'client_credentials' }, headers: { authorization: basic(agent.agentId, agent.secret) } }), 401, 'invalid_client')
  t.equal((await failures(agent.agentId, 'auth_method_not_allowed')).length, 1)
  t.equal((await tokenWithAssertion(other, await ownAssertion(agent.agentId, es256))).statusCode, 200, 'the key still works')
  t.equal((await patch(['client_secret_basic'])).statusCode, 200)
  assertOAuthError(t, await tokenWithAssertion(other, await ownAssertion(agent.agentId, es256)), 401, 'invalid_client')
  const secret = await oauthPost(other, TOKEN, { fields: { grant_type: 'client_credentials' }, headers: { authorization: basic(agent.agentId, agent.secret) } })
  t.equal(secret.statusCode, 200, 'and the secret works again')
  const invalid = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.agentId}`, headers: { ...admin.headers, 'content-type': 'application/json' }, payload: { authMethods: [] } })
  t.equal(invalid.statusCode, 400, 'an agent keeps at least one method')
})

t.test('a suspended agent\'s assertion is unauthorized_client', async (t) => {
  const agent = await agentWithKeys([es256])
  await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.agentId}`, headers: { ...admin.headers, 'content-type': 'application/json' }, payload: { status: 'suspended' } })
  assertOAuthError(t, await tokenWithAssertion(app, await ownAssertion(agent.agentId, es256)), 400, 'unauthorized_client')
})

t.test('private_key_jwt authenticates introspection and revocation callers', async (t) => {
  const agent = await agentWithKeys([es256])
  const token = (await tokenWithAssertion(app, await ownAssertion(agent.agentId, es256))).json().access_token
  const asCaller = async (url: string) => await oauthPost(other, url, {
    fields: { token, client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: await ownAssertion(agent.agentId, es256, { aud: `${ISSUER}/api/v1/token` }) }
  })
  const introspection = await asCaller(INTROSPECT)
  t.equal(introspection.statusCode, 200)
  t.equal(introspection.json().active, true, 'its own token, introspected by its own key')
  t.equal((await asCaller(REVOKE)).statusCode, 200)
  t.same(await introspect(app, token, admin), { active: false }, 'revoked by its own key')
  const replayed = await oauthPost(app, INTROSPECT, { fields: { token, client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: await ownAssertion(agent.agentId, es256, { jti: 'used-once' }) } })
  t.equal(replayed.statusCode, 200)
  const again = await oauthPost(other, INTROSPECT, { fields: { token, client_assertion_type: CLIENT_ASSERTION_TYPE, client_assertion: await ownAssertion(agent.agentId, es256, { jti: 'used-once' }) } })
  assertOAuthError(t, again, 401, 'invalid_client')
})

t.test('the jwt-bearer grant: the agent\'s own assertion obtains its token; refusals are invalid_grant', async (t) => {
  const agent = await agentWithKeys([rs256])
  const res = await tokenByGrant(app, await ownAssertion(agent.agentId, rs256), { scope: 'docs:write' })
  t.equal(res.statusCode, 200, res.body)
  t.equal(decodeToken(res.json().access_token).payload.sub, agent.agentId)
  const issued = (await auditRows(app, 'token.issued', { agentId: agent.agentId })).at(-1)
  t.equal(issued?.metadata.authMethod, 'jwt_bearer')
  const replay = await ownAssertion(agent.agentId, rs256)
  t.equal((await tokenByGrant(app, replay)).statusCode, 200)
  assertOAuthError(t, await tokenByGrant(other, replay), 400, 'invalid_grant')
  assertOAuthError(t, await tokenByGrant(app, await ownAssertion(agent.agentId, rs256, { aud: 'https://elsewhere.example' })), 400, 'invalid_grant')
  assertOAuthError(t, await oauthPost(app, TOKEN, { fields: { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer' } }), 400, 'invalid_request')
  assertOAuthError(t, await tokenWithAssertion(app, await ownAssertion(agent.agentId, rs256), { assertion: 'x.y.z' }), 400, 'invalid_request')
  assertOAuthError(t, await tokenByGrant(app, await ownAssertion(agent.agentId, rs256), { scope: 'agents:write' }), 400, 'invalid_scope')
  // with client authentication too, it must be the same agent
  const stranger = await registerClient(app, admin.headers)
  const mixed = await oauthPost(app, TOKEN, {
    fields: { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: await ownAssertion(agent.agentId, rs256) },
    headers: { authorization: basic(stranger.agentId, stranger.secret) }
  })
  assertOAuthError(t, mixed, 400, 'invalid_grant')
})

t.test('private_key_jwt works for the token-exchange grant too: the actor authenticates with its key', async (t) => {
  const subject = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })
  const actor = await agentWithKeys([es256], { capabilities: ['docs:read'] })
  await app.inject({ method: 'PATCH', url: `/api/v1/agents/${subject.agentId}`, headers: { ...admin.headers, 'content-type': 'application/json' }, payload: { mayAct: [actor.agentId] } })
  const subjectToken = (await oauthPost(app, TOKEN, { fields: { grant_type: 'client_credentials' }, headers: { authorization: basic(subject.agentId, subject.secret) } })).json().access_token
  const res = await tokenWithAssertion(app, await ownAssertion(actor.agentId, es256), {
    grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: subjectToken, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token'
  })
  t.equal(res.statusCode, 200, res.body)
  const { payload } = decodeToken(res.json().access_token)
  t.equal(payload.sub, subject.agentId)
  t.same(payload.act, { sub: actor.agentId })
  // removing the actor's key kills the delegated token, as revoking its credential would
  await putKeys(app, admin.headers, actor.agentId, { jwks: { keys: [] } })
  t.same(await introspect(other, res.json().access_token, admin), { active: false })
})
