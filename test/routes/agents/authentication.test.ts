import { randomUUID, type KeyObject } from 'node:crypto'
import t from 'tap'
import { SignJWT, importPKCS8, type JWTHeaderParameters } from 'jose'
import { build, ISSUER, mintToken, RESOURCE_METADATA, seedAgent, testKeys, tokenIdFor } from '../../helper.js'
import { agentUrl, assertProblem, bearer, foreignKey, type Tap } from './support.js'

const app = await build(t)
const appKey = await importPKCS8(testKeys.privateKey, 'RS256')
const otherKey = foreignKey()

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
const now = () => Math.floor(Date.now() / 1000)

/**
 * An agent, plus the claims of a token the server would issue it (its jti names a credential of the
 * agent), for crafting variants that differ in exactly one respect.
 */
async function subject () {
  const seeded = await seedAgent(app, { capabilities: ['docs:read'] })
  const iat = now()
  const claims: Record<string, unknown> = {
    iss: ISSUER, sub: seeded.agent.agentId, client_id: seeded.agent.agentId, aud: ISSUER, iat, exp: iat + 600,
    jti: await tokenIdFor(app, seeded.agent.agentId), scope: 'docs:read'
  }
  return { ...seeded, claims }
}

async function sign (claims: Record<string, unknown>, header: Partial<JWTHeaderParameters>, key: KeyObject | Parameters<SignJWT['sign']>[0] = appKey): Promise<string> {
  return await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: app.keys.currentKid, ...header } as JWTHeaderParameters).sign(key)
}

async function authFailures (agentId: string | null): Promise<number> {
  const { rows } = await app.pg.query<{ count: number }>(
    "SELECT count(*)::int AS count FROM audit_events WHERE action = 'auth.failed' AND agent_id IS NOT DISTINCT FROM $1", [agentId])
  return rows[0].count
}

/** The token is refused with 401 invalid_token and exactly one auth.failed event. */
async function assertRejected (t: Tap, agentId: string, token: string, auditedAs: string | null = agentId): Promise<void> {
  const before = await authFailures(auditedAs)
  const res = await app.inject({ method: 'GET', url: agentUrl(agentId), headers: bearer(token) })
  assertProblem(t, res, 401, 'UNAUTHORIZED')
  t.match(res.headers['www-authenticate'], /^Bearer error="invalid_token"/)
  t.ok(String(res.headers['www-authenticate']).endsWith(`, resource_metadata="${RESOURCE_METADATA}"`), 'the challenge names the protected resource metadata (RFC 9728 §5.1)')
  t.notOk(res.body.includes(agentId), 'the refusal says nothing about the agent')
  t.equal(await authFailures(auditedAs) - before, 1, 'one auth.failed event')
}

t.test('control: a correctly formed RS256 at+jwt of this issuer is accepted', async (t) => {
  const { agent, claims } = await subject()
  const res = await app.inject({ method: 'GET', url: agentUrl(agent.agentId), headers: bearer(await sign(claims, {})) })
  t.equal(res.statusCode, 200, res.body)
})

t.test('a valid token in a non-canonical spelling (padding, non-zero unused bits) is refused as malformed (issue 11, defect 12)', async (t) => {
  const { agent, claims } = await subject()
  const token = await sign(claims, {})
  const [header, payload, signature] = token.split('.')
  // 256 signature bytes leave 2 unused bits in the last character: another letter, same bytes
  const last = signature.at(-1) as string
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  const twin = alphabet[alphabet.indexOf(last) ^ 1]
  for (const spelling of [`${token}==`, `${header}.${payload}.${signature.slice(0, -1)}${twin}`, `${header}=.${payload}.${signature}`]) {
    const res = await app.inject({ method: 'GET', url: agentUrl(agent.agentId), headers: bearer(spelling) })
    t.equal(res.statusCode, 401, spelling.slice(-12))
  }
  t.equal((await app.inject({ method: 'GET', url: agentUrl(agent.agentId), headers: bearer(token) })).statusCode, 200, 'the canonical spelling works')
})

t.test('typ application/at+jwt is accepted like at+jwt', async (t) => {
  const { agent, claims } = await subject()
  const res = await app.inject({ method: 'GET', url: agentUrl(agent.agentId), headers: bearer(await sign(claims, { typ: 'application/at+jwt' })) })
  t.equal(res.statusCode, 200, res.body)
})

t.test('no token: 401 UNAUTHORIZED with WWW-Authenticate "Bearer", no error, and resource_metadata (RFC 9728 §5.1)', async (t) => {
  const { agent } = await subject()
  const res = await app.inject({ method: 'GET', url: agentUrl(agent.agentId) })
  assertProblem(t, res, 401, 'UNAUTHORIZED')
  t.equal(res.headers['www-authenticate'], `Bearer resource_metadata="${RESOURCE_METADATA}"`)
})

t.test('an Authorization header that is not a Bearer token is a 401', async (t) => {
  const { agent } = await subject()
  for (const authorization of ['Basic dXNlcjpwYXNz', 'Bearer', 'Bearer    ', 'Token abc', 'Bearer a b']) {
    const res = await app.inject({ method: 'GET', url: agentUrl(agent.agentId), headers: { authorization } })
    assertProblem(t, res, 401, 'UNAUTHORIZED')
    t.match(res.headers['www-authenticate'], /^Bearer/)
  }
})

t.test('a token that is not a JWT is refused', async (t) => {
  const { agent } = await subject()
  await assertRejected(t, agent.agentId, 'abc.def.ghi', null)
  await assertRejected(t, agent.agentId, 'not-a-jwt', null)
})

t.test('alg "none" is refused', async (t) => {
  const { agent, claims } = await subject()
  const token = `${b64({ alg: 'none', typ: 'at+jwt', kid: app.keys.currentKid })}.${b64(claims)}.`
  await assertRejected(t, agent.agentId, token)
})

t.test('HS256 signed with the public key as HMAC secret is refused', async (t) => {
  const { agent, claims } = await subject()
  const token = await sign(claims, { alg: 'HS256' }, new TextEncoder().encode(testKeys.publicKey))
  await assertRejected(t, agent.agentId, token)
})

t.test('RS512 or PS256 with the right key is refused (the kid binds RS256)', async (t) => {
  const { agent, claims } = await subject()
  await assertRejected(t, agent.agentId, await sign(claims, { alg: 'RS512' }, await importPKCS8(testKeys.privateKey, 'RS512')))
  await assertRejected(t, agent.agentId, await sign(claims, { alg: 'PS256' }, await importPKCS8(testKeys.privateKey, 'PS256')))
})

t.test('an unknown kid (signed with another RSA key) is refused', async (t) => {
  const { agent, claims } = await subject()
  await assertRejected(t, agent.agentId, await sign(claims, { kid: 'some-other-key' }, otherKey))
})

t.test('another RSA key claiming our kid fails the signature check', async (t) => {
  const { agent, claims } = await subject()
  await assertRejected(t, agent.agentId, await sign(claims, {}, otherKey))
})

t.test('a token without a kid is refused', async (t) => {
  const { agent, claims } = await subject()
  await assertRejected(t, agent.agentId, await sign(claims, { kid: undefined }))
})

t.test('a tampered payload fails the signature check', async (t) => {
  const { agent, claims } = await subject()
  const [header, , signature] = (await sign(claims, {})).split('.')
  const forged = `${header}.${b64({ ...claims, scope: 'docs:read agents:read agents:write' })}.${signature}`
  await assertRejected(t, agent.agentId, forged)
})

t.test('a wrong or missing typ is refused', async (t) => {
  const { agent, claims } = await subject()
  await assertRejected(t, agent.agentId, await sign(claims, { typ: 'JWT' }))
  await assertRejected(t, agent.agentId, await sign(claims, { typ: undefined }))
  await assertRejected(t, agent.agentId, await sign(claims, { typ: 'id_token+jwt' }))
})

t.test('a wrong issuer is refused', async (t) => {
  const { agent } = await subject()
  await assertRejected(t, agent.agentId, await mintToken(app, agent.agentId, { iss: 'http://evil.test', scope: 'docs:read' }))
})

t.test('a wrong audience is refused (the management API accepts only aud = ISSUER_URL)', async (t) => {
  const { agent } = await subject()
  await assertRejected(t, agent.agentId, await mintToken(app, agent.agentId, { aud: 'https://resource.example', scope: 'docs:read' }))
  await assertRejected(t, agent.agentId, await mintToken(app, agent.agentId, { aud: `${ISSUER}/other`, scope: 'docs:read' }))
})

t.test('an expired token is refused (beyond the 30 s skew)', async (t) => {
  const { agent } = await subject()
  await assertRejected(t, agent.agentId, await mintToken(app, agent.agentId, { iat: now() - 4000, exp: now() - 120, scope: 'docs:read' }))
})

t.test('a token not valid yet (nbf beyond the skew) is refused', async (t) => {
  const { agent } = await subject()
  await assertRejected(t, agent.agentId, await mintToken(app, agent.agentId, { nbf: now() + 300, scope: 'docs:read' }))
})

t.test('a token lacking exp, jti or sub is refused', async (t) => {
  const { agent, claims } = await subject()
  for (const missing of ['exp', 'jti', 'sub']) {
    const { [missing]: _dropped, ...rest } = claims
    await assertRejected(t, agent.agentId, await sign(rest, {}), missing === 'sub' ? null : agent.agentId)
  }
})

t.test('a token for an agent that does not exist is refused and audited without an agentId', async (t) => {
  const ghost = randomUUID()
  await assertRejected(t, ghost, await sign({ iss: ISSUER, sub: ghost, client_id: ghost, aud: ISSUER, iat: now(), exp: now() + 600, jti: randomUUID(), scope: 'agents:read' }, {}), null)
})

t.test('a token whose sub is not a UUID is refused', async (t) => {
  const { agent, claims } = await subject()
  const res = await app.inject({ method: 'GET', url: agentUrl(agent.agentId), headers: bearer(await sign({ ...claims, sub: "x' OR '1'='1" }, {})) })
  assertProblem(t, res, 401, 'UNAUTHORIZED')
  t.match(res.headers['www-authenticate'], /error="invalid_token"/)
})

t.test('the token of a suspended agent is refused, even one issued after the suspension', async (t) => {
  const admin = await seedAgent(app, { capabilities: ['agents:read', 'agents:write'], owner: 'platform' })
  const target = await subject()
  const suspend = await app.inject({ method: 'PATCH', url: agentUrl(target.agent.agentId), headers: admin.headers, payload: { status: 'suspended' } })
  t.equal(suspend.statusCode, 200, suspend.body)
  await assertRejected(t, target.agent.agentId, target.token)
  const later = now() + 2
  await assertRejected(t, target.agent.agentId, await mintToken(app, target.agent.agentId, { scope: 'docs:read', iat: later, exp: later + 600 }))
})

t.test('a token issued before suspension stays invalid after reactivation', async (t) => {
  const admin = await seedAgent(app, { capabilities: ['agents:read', 'agents:write'], owner: 'platform' })
  const target = await subject()
  const url = agentUrl(target.agent.agentId)
  t.equal((await app.inject({ method: 'PATCH', url, headers: admin.headers, payload: { status: 'suspended' } })).statusCode, 200)
  t.equal((await app.inject({ method: 'PATCH', url, headers: admin.headers, payload: { status: 'active' } })).statusCode, 200)
  await assertRejected(t, target.agent.agentId, target.token)
  await assertRejected(t, target.agent.agentId, await sign(target.claims, {}))
})
