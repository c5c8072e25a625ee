import { randomBytes, randomUUID } from 'node:crypto'
import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { build, seedAdmin } from '../../helper.js'
import {
  accessToken, assertOAuthError, auditRows, basic, credentialUrl, registerClient, requestToken, TOKEN, oauthPost, type Client
} from './support.js'

// failures are the point of this file: the per-IP failure limit is tested in token-limits.test.ts
const app = await build(t, { env: { RATE_LIMIT_AUTH_FAILURES_PER_IP: '0' } })
const admin = await seedAdmin(app)
const client = await registerClient(app, admin.headers, { capabilities: ['docs:read', 'docs:write'] })

/** The same secret with its last random byte changed: right credential, wrong secret. */
function tamper (secret: string): string {
  const bytes = Buffer.from(secret.slice('sk_live_'.length), 'base64url')
  bytes[bytes.length - 1] ^= 0x01
  return 'sk_live_' + bytes.toString('base64url')
}

/** A secret of the right shape naming a credential that does not exist. */
const strangerSecret = () => 'sk_live_' + randomBytes(48).toString('base64url')

t.test('invalid_request', async (t) => {
  t.test('a missing grant_type is invalid_request', async (t) => {
    assertOAuthError(t, await requestToken(app, client, { fields: { grant_type: undefined } }), 400, 'invalid_request')
    assertOAuthError(t, await requestToken(app, client, { fields: { grant_type: undefined }, json: true }), 400, 'invalid_request')
  })

  t.test('a repeated parameter is invalid_request', async (t) => {
    const headers = { authorization: basic(client.agentId, client.secret) }
    for (const rawForm of ['grant_type=client_credentials&grant_type=client_credentials', 'grant_type=client_credentials&scope=docs:read&scope=docs:write']) {
      assertOAuthError(t, await oauthPost(app, TOKEN, { rawForm, headers }), 400, 'invalid_request')
    }
    const post = `grant_type=client_credentials&client_id=${client.agentId}&client_id=${client.agentId}&client_secret=${client.secret}`
    assertOAuthError(t, await oauthPost(app, TOKEN, { rawForm: post }), 400, 'invalid_request')
  })

  t.test('client credentials in the Authorization header and in the body at once are invalid_request', async (t) => {
    const both = await requestToken(app, client, { fields: { client_id: client.agentId, client_secret: client.secret } })
    assertOAuthError(t, both, 400, 'invalid_request')
    const bothJson = await requestToken(app, client, { json: true, fields: { client_id: client.agentId, client_secret: client.secret } })
    assertOAuthError(t, bothJson, 400, 'invalid_request')
  })

  t.test('an unknown parameter is invalid_request, form-encoded or JSON', async (t) => {
    assertOAuthError(t, await requestToken(app, client, { fields: { audience: 'x' } }), 400, 'invalid_request')
    assertOAuthError(t, await requestToken(app, client, { auth: 'post', json: true, fields: { username: 'x' } }), 400, 'invalid_request')
  })

  t.test('no invalid_request issues a token', async (t) => {
    const before = (await auditRows(app, 'token.issued', { agentId: client.agentId })).length
    await requestToken(app, client, { fields: { grant_type: undefined } })
    await requestToken(app, client, { fields: { client_id: client.agentId, client_secret: client.secret } })
    t.equal((await auditRows(app, 'token.issued', { agentId: client.agentId })).length, before)
  })
})

t.test('unsupported_grant_type for any grant but client_credentials, token exchange and jwt-bearer', async (t) => {
  for (const grant of ['password', 'authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:saml2-bearer', 'urn:ietf:params:oauth:grant-type:device_code']) {
    assertOAuthError(t, await requestToken(app, client, { fields: { grant_type: grant } }), 400, 'unsupported_grant_type')
  }
})

t.test('the grant is judged before its parameters: a password grant with username and password is unsupported_grant_type (issue 11, defect 12)', async (t) => {
  const response = await requestToken(app, client, { fields: { grant_type: 'password', username: 'alice', password: 'wonderland' } })
  assertOAuthError(t, response, 400, 'unsupported_grant_type')
})

t.test('a resource with surrounding white space is invalid_target, never an audience (issue 11, defect 12)', async (t) => {
  for (const resource of [' https://rs.example/', 'https://rs.example/ ', 'https://rs.example/a b']) {
    assertOAuthError(t, await requestToken(app, client, { fields: { resource } }), 400, 'invalid_target')
  }
})

t.test('a JSON body naming a parameter twice is invalid_request, like a repeated form parameter (issue 11, defect 12)', async (t) => {
  for (const payload of ['{"grant_type":"client_credentials","scope":"docs:read","scope":"docs:write"}',
    `{"grant_type":"client_credentials","client_id":"${client.agentId}","client_secret":"${client.secret}","client_secret":"other"}`]) {
    const response = await app.inject({ method: 'POST', url: TOKEN, headers: { 'content-type': 'application/json' }, payload })
    const body = assertOAuthError(t, response, 400, 'invalid_request')
    t.match(body.error_description, /parameter repeated: (scope|client_secret)/)
  }
})

t.test('a token request whose bytes are not UTF-8 (form or JSON) is invalid_request and issues nothing, instead of being read with U+FFFD in place of the bad bytes', async (t) => {
  const before = (await auditRows(app, 'token.issued', { agentId: client.agentId })).length
  const headers = { authorization: basic(client.agentId, client.secret) }
  const cases: Array<[string, Buffer]> = [
    ['application/x-www-form-urlencoded', Buffer.concat([Buffer.from('grant_type=client_credentials&resource=https://rs.example/'), Buffer.from([0xe9])])],
    ['application/json', Buffer.concat([Buffer.from('{"grant_type":"client_credentials","resource":"https://rs.example/'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')])]
  ]
  for (const [type, payload] of cases) {
    const body = assertOAuthError(t, await app.inject({ method: 'POST', url: TOKEN, headers: { ...headers, 'content-type': type }, payload }), 400, 'invalid_request')
    t.match(body.error_description, /not UTF-8/, type)
  }
  t.equal((await auditRows(app, 'token.issued', { agentId: client.agentId })).length, before, 'no token issued')
})

t.test('a JSON body with a lone surrogate is invalid_request for its sender alone (issue 11, defect 2)', async (t) => {
  const response = await app.inject({
    method: 'POST',
    url: TOKEN,
    headers: { authorization: basic(client.agentId, client.secret), 'content-type': 'application/json' },
    payload: '{"grant_type":"client_credentials","resource":"https://rs.example/\\ud800"}'
  })
  const body = assertOAuthError(t, response, 400, 'invalid_request')
  t.match(body.error_description, /resource is not valid Unicode/)
  t.equal((await requestToken(app, client)).statusCode, 200, 'the same client\'s next good request is served')
})

t.test('invalid_scope for a scope the agent does not hold, alone or with one it holds', async (t) => {
  for (const scope of ['agents:write', 'docs:read agents:write', 'docs:admin']) {
    assertOAuthError(t, await requestToken(app, client, { fields: { scope } }), 400, 'invalid_scope')
  }
})

t.test('invalid_client: every kind of bad client authentication gets the same 401 body', async (t) => {
  const victim = await registerClient(app, admin.headers)
  const other = await registerClient(app, admin.headers)
  // used once first, so whatever the server remembers of the secret must not outlive what follows
  const revoked = await registerClient(app, admin.headers)
  await accessToken(app, revoked)
  const gone = await app.inject({ method: 'DELETE', url: credentialUrl(revoked.agentId, revoked.credentialId), headers: admin.headers })
  t.equal(gone.statusCode, 204)
  const expired = await registerClient(app, admin.headers)
  await accessToken(app, expired)
  await app.pg.query("UPDATE credentials SET expires_at = now() - interval '1 minute' WHERE credential_id = $1", [expired.credentialId])
  const decommissioned = await registerClient(app, admin.headers)
  await accessToken(app, decommissioned)
  t.equal((await app.inject({ method: 'DELETE', url: `/api/v1/agents/${decommissioned.agentId}`, headers: admin.headers })).statusCode, 204)
  // decommissioned while its credential row still says active: the agent's status alone must refuse
  const decommissionedOnly = await registerClient(app, admin.headers)
  await accessToken(app, decommissionedOnly)
  await app.pg.query("UPDATE agents SET status = 'decommissioned' WHERE agent_id = $1", [decommissionedOnly.agentId])

  const cases: Array<[string, Pick<Client, 'agentId' | 'secret'>]> = [
    ['unknown client', { agentId: randomUUID(), secret: strangerSecret() }],
    ['unknown client with a client_id that is not a UUID', { agentId: 'not-a-client', secret: strangerSecret() }],
    ['known client, secret of another client', { agentId: victim.agentId, secret: other.secret }],
    ['wrong secret', { agentId: victim.agentId, secret: tamper(victim.secret) }],
    ['malformed secret', { agentId: victim.agentId, secret: 'hunter2' }],
    ['revoked credential', revoked],
    ['expired credential', expired],
    ['decommissioned agent', decommissioned],
    ['decommissioned agent with a credential still marked active', decommissionedOnly]
  ]
  const bodies: string[] = []
  for (const [label, presented] of cases) {
    const viaBasic = await requestToken(app, presented)
    const viaPost = await requestToken(app, presented, { auth: 'post' })
    t.test(label, async (t) => {
      assertOAuthError(t, viaBasic, 401, 'invalid_client')
      t.match(viaBasic.headers['www-authenticate'], /^Basic /, 'WWW-Authenticate: Basic when Basic was used')
      assertOAuthError(t, viaPost, 401, 'invalid_client')
      t.equal(viaPost.headers['www-authenticate'], undefined, 'no WWW-Authenticate challenge for client_secret_post')
    })
    bodies.push(viaBasic.body, viaPost.body)
  }
  t.equal(new Set(bodies).size, 1, `one body for every case: ${[...new Set(bodies)].join(' | ')}`)
})

t.test('no client authentication at all is invalid_client 401', async (t) => {
  assertOAuthError(t, await requestToken(app, client, { auth: 'none' }), 401, 'invalid_client')
})

t.test('a failed client authentication writes one auth.failed event naming the existing agent, without the presented secret', async (t) => {
  const victim = await registerClient(app, admin.headers)
  const wrong = tamper(victim.secret)
  t.equal((await requestToken(app, { agentId: victim.agentId, secret: wrong })).statusCode, 401)
  const events = await auditRows(app, 'auth.failed', { agentId: victim.agentId })
  t.equal(events.length, 1)
  t.equal(events[0].outcome, 'failure')
  const text = JSON.stringify(events[0])
  t.notOk(text.includes(wrong) || text.includes(victim.secret), 'no secret in the event')
})

t.test('a suspended agent is unauthorized_client 400 with its right secret; reactivated, it gets tokens again', async (t) => {
  const agent = await registerClient(app, admin.headers)
  await accessToken(app, agent)
  const suspend = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.agentId}`, headers: admin.headers, payload: { status: 'suspended' } })
  t.equal(suspend.statusCode, 200, suspend.body)

  const refused = await requestToken(app, agent)
  assertOAuthError(t, refused, 400, 'unauthorized_client')
  assertOAuthError(t, await requestToken(app, agent, { auth: 'post' }), 400, 'unauthorized_client')

  const reactivate = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.agentId}`, headers: admin.headers, payload: { status: 'active' } })
  t.equal(reactivate.statusCode, 200, reactivate.body)
  t.equal((await requestToken(app, agent)).statusCode, 200)
})

t.test('errors carry Cache-Control: no-store like successes', async (t) => {
  const responses: LightMyRequestResponse[] = [
    await requestToken(app, client, { fields: { grant_type: 'password' } }),
    await requestToken(app, client, { fields: { scope: 'nope:nope' } }),
    await requestToken(app, { agentId: client.agentId, secret: tamper(client.secret) })
  ]
  for (const res of responses) t.equal(res.headers['cache-control'], 'no-store', `${res.statusCode} ${res.body}`)
})
