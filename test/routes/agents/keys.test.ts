import { generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { build } from '../../helper.js'
import { accessToken, auditRows, bootstrapClient, registerClient } from '../oauth/support.js'
import { putKeys, signingKey } from '../../support/assertions.js'

/**
 * PUT/GET /api/v1/agents/:agentId/jwks: what a key set may hold, and who may change it (self with
 * an unnarrowed token, or credentials:write without escalation). A refused PUT changes nothing.
 */

const app = await build(t, { env: { RATE_LIMIT_AUTH_FAILURES_PER_IP: '0', RATE_LIMIT_TOKEN_PER_CLIENT: '0' } })
const admin = await bootstrapClient(app)
const es256 = await signingKey('ES256')
const eddsa = await signingKey('EdDSA')

const keysUrl = (agentId: string) => `/api/v1/agents/${agentId}/jwks`

t.test('PUT registers a JWK Set, GET reads it back, and an empty set removes every key', async (t) => {
  const agent = await registerClient(app, admin.headers)
  const put = await putKeys(app, admin.headers, agent.agentId, { jwks: { keys: [es256.publicJwk, eddsa.publicJwk] } })
  t.equal(put.statusCode, 200, put.body)
  t.same(put.json().jwks.keys.map((key: { kid: string }) => key.kid), [es256.kid, eddsa.kid])
  const read = await app.inject({ method: 'GET', url: keysUrl(agent.agentId), headers: admin.headers })
  t.equal(read.statusCode, 200)
  t.same(read.json().jwks, put.json().jwks)
  t.equal(read.json().jwksUri, null)
  const cleared = await putKeys(app, admin.headers, agent.agentId, { jwks: { keys: [] } })
  t.equal(cleared.statusCode, 200)
  t.equal(cleared.json().jwks, null)
  const { rows } = await app.pg.query("SELECT count(*)::int AS n FROM credentials WHERE client_id = $1 AND kind = 'key' AND status = 'active'", [agent.agentId])
  t.equal(rows[0].n, 0, 'no key row left active')
})

t.test('a jwks_uri replaces inline keys (https only)', async (t) => {
  const agent = await registerClient(app, admin.headers)
  const put = await putKeys(app, admin.headers, agent.agentId, { jwksUri: 'https://keys.example.com/agent.json' })
  t.equal(put.statusCode, 200, put.body)
  t.equal(put.json().jwksUri, 'https://keys.example.com/agent.json')
  t.equal((await putKeys(app, admin.headers, agent.agentId, { jwksUri: 'http://keys.example.com/agent.json' })).statusCode, 400)
  t.equal((await putKeys(app, admin.headers, agent.agentId, { jwks: { keys: [es256.publicJwk] }, jwksUri: 'https://keys.example.com/a.json' })).statusCode, 400, 'not both')
})

t.test('key sets that cannot be registered are refused with a 400 naming the member, and change nothing', async (t) => {
  const agent = await registerClient(app, admin.headers)
  t.equal((await putKeys(app, admin.headers, agent.agentId, { jwks: { keys: [es256.publicJwk] } })).statusCode, 200)
  const before = (await app.inject({ method: 'GET', url: keysUrl(agent.agentId), headers: admin.headers })).json()
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const privateJwk = { ...privateKey.export({ format: 'jwk' }), kid: 'leaked' }
  const small = { ...generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' }), kid: 'small' }
  const p384 = { ...generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ format: 'jwk' }), kid: 'p384' }
  const many = await Promise.all(Array.from({ length: 11 }, async () => (await signingKey('ES256')).publicJwk))
  const cases: Array<[string, unknown, RegExp]> = [
    ['a private key member', { jwks: { keys: [privateJwk] } }, /jwks\.keys\[0\]\.d/],
    ['an RSA key under 2048 bits', { jwks: { keys: [small] } }, /jwks\.keys\[0\]\.n/],
    ['a curve none of the algorithms uses', { jwks: { keys: [p384] } }, /jwks\.keys\[0\]/],
    ['a symmetric key', { jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'hmac' }] } }, /jwks\.keys\[0\]\.k/],
    ['two keys with one kid', { jwks: { keys: [es256.publicJwk, { ...eddsa.publicJwk, kid: es256.kid }] } }, /jwks\.keys\[1\]\.kid/],
    ['an alg the key does not fit', { jwks: { keys: [{ ...es256.publicJwk, alg: 'RS256' }] } }, /jwks\.keys\[0\]\.alg/],
    ['a point off the curve', { jwks: { keys: [{ ...es256.publicJwk, x: eddsa.publicJwk.x }] } }, /jwks\.keys\[0\]/]
  ]
  for (const [name, body, field] of cases) {
    const res = await putKeys(app, admin.headers, agent.agentId, body)
    t.equal(res.statusCode, 400, `${name}: ${res.body}`)
    t.equal(res.json().code, 'VALIDATION_ERROR', name)
    t.match(JSON.stringify(res.json().errors), field, `${name}: names ${String(field)}`)
  }
  t.equal((await putKeys(app, admin.headers, agent.agentId, { jwks: { keys: many } })).statusCode, 400, 'more than 10 keys')
  const after = (await app.inject({ method: 'GET', url: keysUrl(agent.agentId), headers: admin.headers })).json()
  t.same(after, before, 'nothing changed')
  t.equal((await auditRows(app, 'agent.keys_updated', { agentId: agent.agentId })).length, 1, 'only the accepted PUT is audited')
})

t.test('an agent changes its own keys with an unnarrowed token; a narrowed one is refused', async (t) => {
  const agent = await registerClient(app, admin.headers, { capabilities: ['docs:read', 'docs:write'] })
  const full = { authorization: `Bearer ${await accessToken(app, agent)}` }
  t.equal((await putKeys(app, full, agent.agentId, { jwks: { keys: [es256.publicJwk] } })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: keysUrl(agent.agentId), headers: full })).statusCode, 200, 'and reads them')
  const narrowed = { authorization: `Bearer ${await accessToken(app, agent, { fields: { scope: 'docs:read' } })}` }
  t.equal((await putKeys(app, narrowed, agent.agentId, { jwks: { keys: [eddsa.publicJwk] } })).statusCode, 403)
})

t.test('credentials:write changes another agent\'s keys only without escalation; others get 403 or 404', async (t) => {
  const operator = await registerClient(app, admin.headers, { capabilities: ['credentials:write', 'agents:read'] })
  const operatorHeaders = { authorization: `Bearer ${await accessToken(app, operator)}` }
  const worker = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })
  t.equal((await putKeys(app, operatorHeaders, worker.agentId, { jwks: { keys: [es256.publicJwk] } })).statusCode, 200, 'a worker with no platform scope')
  const denied = await putKeys(app, operatorHeaders, admin.agentId, { jwks: { keys: [es256.publicJwk] } })
  t.equal(denied.statusCode, 403, 'an admin: the keys would act with scopes the caller lacks')
  t.ok((await auditRows(app, 'access.denied', { agentId: admin.agentId })).some((row) => row.metadata.reason === 'privilege_escalation'))
  const reader = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })
  const readerHeaders = { authorization: `Bearer ${await accessToken(app, reader)}` }
  t.equal((await putKeys(app, readerHeaders, worker.agentId, { jwks: { keys: [es256.publicJwk] } })).statusCode, 404, 'a caller that may not see it')
  t.equal((await app.inject({ method: 'PUT', url: keysUrl(worker.agentId), payload: { jwks: { keys: [] } } })).statusCode, 401)
})
