import { randomUUID } from 'node:crypto'
import t from 'tap'
import { calculateJwkThumbprint } from 'jose'
import type { LightMyRequestResponse } from 'fastify'
import { build, ISSUER, type TestApp } from '../../helper.js'
import { assertOAuthError, auditRows, basic, bootstrapClient, decodeToken, introspect, oauthPost, registerClient, TOKEN, type Client } from './support.js'
import { ath, dpopProof, signingKey, type SigningKey } from '../../support/assertions.js'

/**
 * DPoP (RFC 9449): tokens bound to the key of the proof that asked for them, and the proofs that
 * must then come with them. Two instances on one PostgreSQL and Redis; a third app with server
 * nonces required.
 */

const env = { RATE_LIMIT_AUTH_FAILURES_PER_IP: '0', RATE_LIMIT_TOKEN_PER_CLIENT: '0', RATE_LIMIT_BEARER_FAILURES_PER_IP: '0' }
const app = await build(t, { env })
const other = await build(t, { env, databaseUrl: app.databaseUrl })
const admin = await bootstrapClient(app)
const agent = await registerClient(app, admin.headers, { capabilities: ['docs:read', 'agents:read'] })
const key = await signingKey('ES256')
const TOKEN_URL = `${ISSUER}/api/v1/token`
const agentUrl = (id: string) => `/api/v1/agents/${id}`

async function boundToken (target: TestApp, client: Client = agent, proofKey: SigningKey = key, fields: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return await oauthPost(target, TOKEN, {
    fields: { grant_type: 'client_credentials', ...fields },
    headers: { authorization: basic(client.agentId, client.secret), dpop: await dpopProof(proofKey, { htm: 'POST', htu: TOKEN_URL }) }
  })
}

async function readAgent (target: TestApp, token: string, proof: string | undefined, scheme = 'DPoP'): Promise<LightMyRequestResponse> {
  return await target.inject({ method: 'GET', url: agentUrl(agent.agentId), headers: { authorization: `${scheme} ${token}`, ...(proof === undefined ? {} : { dpop: proof }) } })
}

t.test('a token request with a DPoP proof gets a DPoP token bound to the proof\'s key (cnf.jkt), and introspection shows the binding', async (t) => {
  const res = await boundToken(app)
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().token_type, 'DPoP')
  const { payload } = decodeToken(res.json().access_token)
  t.same(payload.cnf, { jkt: await calculateJwkThumbprint(key.publicJwk, 'sha256') })
  const introspection = await introspect(other, res.json().access_token, admin)
  t.match(introspection, { active: true, token_type: 'DPoP', cnf: { jkt: (payload.cnf as { jkt: string }).jkt } })
  const plain = await oauthPost(app, TOKEN, { fields: { grant_type: 'client_credentials' }, headers: { authorization: basic(agent.agentId, agent.secret) } })
  t.equal(plain.json().token_type, 'Bearer', 'without a proof: a Bearer token, unbound')
  t.notOk('cnf' in decodeToken(plain.json().access_token).payload)
})

t.test('the management API takes a bound token as "DPoP <token>" with a proof of its key (htm, htu from ISSUER_URL, ath), and refuses it as Bearer', async (t) => {
  const token = (await boundToken(app)).json().access_token
  const url = `${ISSUER}${agentUrl(agent.agentId)}`
  const ok = await readAgent(other, token, await dpopProof(key, { htm: 'GET', htu: url, ath: ath(token) }))
  t.equal(ok.statusCode, 200, ok.body)
  const asBearer = await readAgent(other, token, undefined, 'Bearer')
  t.equal(asBearer.statusCode, 401)
  t.match(asBearer.headers['www-authenticate'], /^DPoP error="invalid_token"/)
  t.ok((await auditRows(app, 'auth.failed', { agentId: agent.agentId })).some((row) => row.metadata.reason === 'dpop_bound_token_as_bearer'))
  const unbound = (await oauthPost(app, TOKEN, { fields: { grant_type: 'client_credentials' }, headers: { authorization: basic(agent.agentId, agent.secret) } })).json().access_token
  const unboundAsDpop = await readAgent(app, unbound, await dpopProof(key, { htm: 'GET', htu: url, ath: ath(unbound) }))
  t.equal(unboundAsDpop.statusCode, 401, 'an unbound token under the DPoP scheme')
})

t.test('bad proofs at the resource: each a 401 with a DPoP challenge naming invalid_dpop_proof', async (t) => {
  const token = (await boundToken(app)).json().access_token
  const url = `${ISSUER}${agentUrl(agent.agentId)}`
  const now = Math.floor(Date.now() / 1000)
  const stranger = await signingKey('ES256')
  const replayed = await dpopProof(key, { htm: 'GET', htu: url, ath: ath(token) })
  t.equal((await readAgent(app, token, replayed)).statusCode, 200)
  const cases: Array<[string, string | undefined]> = [
    ['no proof', undefined],
    ['wrong htu', await dpopProof(key, { htm: 'GET', htu: `${ISSUER}/api/v1/agents`, ath: ath(token) })],
    ['htu naming the Host header rather than ISSUER_URL', await dpopProof(key, { htm: 'GET', htu: `http://localhost:80${agentUrl(agent.agentId)}`, ath: ath(token) })],
    ['wrong htm', await dpopProof(key, { htm: 'POST', htu: url, ath: ath(token) })],
    ['stale iat', await dpopProof(key, { htm: 'GET', htu: url, ath: ath(token), iat: now - 600 })],
    ['iat in the future', await dpopProof(key, { htm: 'GET', htu: url, ath: ath(token), iat: now + 600 })],
    ['ath of another token', await dpopProof(key, { htm: 'GET', htu: url, ath: ath(`${token}x`) })],
    ['no ath', await dpopProof(key, { htm: 'GET', htu: url })],
    ['signed by another key than the token is bound to', await dpopProof(stranger, { htm: 'GET', htu: url, ath: ath(token) })],
    ['replayed jti, on another instance', replayed],
    ['typ other than dpop+jwt', await dpopProof(key, { htm: 'GET', htu: url, ath: ath(token) }, { typ: 'JWT' })]
  ]
  for (const [name, proof] of cases) {
    const res = await readAgent(other, token, proof)
    t.equal(res.statusCode, 401, name)
    t.match(res.headers['www-authenticate'], /^DPoP error="invalid_dpop_proof"/, `${name}: DPoP challenge`)
  }
})

t.test('bad proofs at the token endpoint: each 400 invalid_dpop_proof, no token', async (t) => {
  const now = Math.floor(Date.now() / 1000)
  const { privateKey } = await import('node:crypto').then(({ generateKeyPairSync }) => generateKeyPairSync('ec', { namedCurve: 'P-256' }))
  const privateJwk = privateKey.export({ format: 'jwk' })
  const replayed = await dpopProof(key, { htm: 'POST', htu: TOKEN_URL })
  t.equal((await oauthPost(app, TOKEN, { fields: { grant_type: 'client_credentials' }, headers: { authorization: basic(agent.agentId, agent.secret), dpop: replayed } })).statusCode, 200)
  const unsigned = `${Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'none', jwk: key.publicJwk })).toString('base64url')}.${Buffer.from(JSON.stringify({ htm: 'POST', htu: TOKEN_URL, iat: now, jti: randomUUID() })).toString('base64url')}.`
  const cases: Array<[string, string]> = [
    ['wrong htu', await dpopProof(key, { htm: 'POST', htu: `${ISSUER}/api/v1/token/introspect` })],
    ['wrong htm', await dpopProof(key, { htm: 'GET', htu: TOKEN_URL })],
    ['stale iat', await dpopProof(key, { htm: 'POST', htu: TOKEN_URL, iat: now - 300 })],
    ['replayed jti, on another instance', replayed],
    ['a private key in jwk', await dpopProof(key, { htm: 'POST', htu: TOKEN_URL }, { jwk: privateJwk })],
    ['the header jwk is another key than the signature\'s', await dpopProof(key, { htm: 'POST', htu: TOKEN_URL }, { jwk: (await signingKey('ES256')).publicJwk })],
    ['alg none', unsigned],
    ['garbage', 'not-a-jwt']
  ]
  for (const [name, proof] of cases) {
    const res = await oauthPost(other, TOKEN, { fields: { grant_type: 'client_credentials' }, headers: { authorization: basic(agent.agentId, agent.secret), dpop: proof } })
    t.test(name, async (t) => { assertOAuthError(t, res, 400, 'invalid_dpop_proof') })
  }
})

t.test('an agent with dpopBound must send a proof; a token exchange of a bound subject token is bound to the actor\'s proof key', async (t) => {
  const bound = await registerClient(app, admin.headers, { capabilities: ['docs:read'], dpopBound: true })
  assertOAuthError(t, await oauthPost(app, TOKEN, { fields: { grant_type: 'client_credentials' }, headers: { authorization: basic(bound.agentId, bound.secret) } }), 400, 'invalid_dpop_proof')
  t.equal((await boundToken(app, bound)).statusCode, 200, 'with a proof it gets its token')

  const actor = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })
  await app.inject({ method: 'PATCH', url: agentUrl(bound.agentId), headers: { ...admin.headers, 'content-type': 'application/json' }, payload: { mayAct: [actor.agentId] } })
  const subjectToken = (await boundToken(app, bound)).json().access_token
  const exchange = { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: subjectToken, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token' }
  assertOAuthError(t, await oauthPost(app, TOKEN, { fields: exchange, headers: { authorization: basic(actor.agentId, actor.secret) } }), 400, 'invalid_dpop_proof')
  const actorKey = await signingKey('EdDSA')
  const res = await boundToken(app, actor, actorKey, exchange)
  t.equal(res.statusCode, 200, res.body)
  t.same(decodeToken(res.json().access_token).payload.cnf, { jkt: await calculateJwkThumbprint(actorKey.publicJwk, 'sha256') }, 'bound to the actor\'s key')
})

t.test('with DPOP_NONCE_REQUIRED a proof without the server nonce is use_dpop_nonce with DPoP-Nonce; a nonce from one instance works on another', async (t) => {
  const strict = await build(t, { env: { ...env, DPOP_NONCE_REQUIRED: 'true' } })
  const peer = await build(t, { env: { ...env, DPOP_NONCE_REQUIRED: 'true' }, databaseUrl: strict.databaseUrl })
  const root = await bootstrapClient(strict)
  const headers = async (nonce?: string) => ({ authorization: basic(root.agentId, root.secret), dpop: await dpopProof(key, { htm: 'POST', htu: TOKEN_URL, nonce }) })
  const first = await oauthPost(strict, TOKEN, { fields: { grant_type: 'client_credentials' }, headers: await headers() })
  assertOAuthError(t, first, 400, 'use_dpop_nonce')
  const nonce = first.headers['dpop-nonce'] as string
  t.ok(typeof nonce === 'string' && nonce.length > 20, 'the nonce is in DPoP-Nonce')
  assertOAuthError(t, await oauthPost(strict, TOKEN, { fields: { grant_type: 'client_credentials' }, headers: await headers('made-up') }), 400, 'use_dpop_nonce')
  const retried = await oauthPost(peer, TOKEN, { fields: { grant_type: 'client_credentials' }, headers: await headers(nonce) })
  t.equal(retried.statusCode, 200, retried.body)
  t.equal(retried.json().token_type, 'DPoP')
  t.ok(typeof retried.headers['dpop-nonce'] === 'string', 'a success carries the nonce to use next')
})
