import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build } from '../../helper.js'
import {
  AGENTS, REVOKE, addCredential, basic, bearer, bootstrap, introspect, registerClient, requestToken, tokenFor, within,
  type Client, type Tap
} from '../../support/oauth-flow.js'

/**
 * Two app instances share one PostgreSQL schema and one Redis, as two replicas behind a load
 * balancer do. Every kind of revocation is performed on instance A and must be in force on
 * instance B within 1 s, for introspection and for the management API.
 */

const LIMIT_MS = 1000

const a = await build(t)
const b = await build(t, { databaseUrl: a.databaseUrl })
const admin = await bootstrap(a.databaseUrl)
const adminToken = await tokenFor(a, admin)

const selfUrl = (client: Client) => `${AGENTS}/${client.clientId}`

async function selfRead (app: FastifyInstance, token: string, client: Client) {
  return await app.inject({ method: 'GET', url: selfUrl(client), headers: bearer(token) })
}

/** True when `app` treats the token as dead: introspection says exactly {active:false} and the API answers 401. */
async function deadOn (app: FastifyInstance, token: string, client: Client): Promise<boolean> {
  const [intro, api] = await Promise.all([introspect(app, adminToken, token), selfRead(app, token, client)])
  return intro.statusCode === 200 && intro.body === '{"active":false}' && api.statusCode === 401
}

/** Asserts the token becomes dead on `app` within 1 s, then checks the exact answers. */
async function assertDiesWithin (t: Tap, app: FastifyInstance, token: string, client: Client, label: string): Promise<void> {
  const elapsed = await within(() => deadOn(app, token, client), LIMIT_MS)
  t.not(elapsed, null, `${label}: dead on the other instance within ${LIMIT_MS} ms (took ${elapsed} ms)`)
  const intro = await introspect(app, adminToken, token)
  t.equal(intro.statusCode, 200, `${label}: introspection answers 200`)
  t.same(intro.json(), { active: false }, `${label}: introspection says exactly {active:false}`)
  t.equal(Object.keys(intro.json() as object).length, 1, `${label}: nothing but "active" is disclosed`)
  const api = await selfRead(app, token, client)
  t.equal(api.statusCode, 401, `${label}: the management API refuses the token`)
  t.match(api.headers['www-authenticate'], /^Bearer error="invalid_token"/, `${label}: 401 names invalid_token`)
}

/** Asserts the token is alive on `app` right now (so a later "dead" assertion can fail). */
async function assertAlive (t: Tap, app: FastifyInstance, token: string, client: Client, label: string): Promise<void> {
  const intro = await introspect(app, adminToken, token)
  t.equal(intro.statusCode, 200, `${label}: introspection answers 200`)
  t.equal((intro.json() as { active: boolean }).active, true, `${label}: introspection says active`)
  const api = await selfRead(app, token, client)
  t.equal(api.statusCode, 200, `${label}: the management API accepts the token (${api.body.slice(0, 120)})`)
}

t.test('a token revoked on one instance (RFC 7009) is refused on the other within 1 s', async (t) => {
  const client = await registerClient(a, adminToken)
  const token = await tokenFor(b, client)
  const sibling = await tokenFor(b, client)
  await assertAlive(t, b, token, client, 'before revocation')

  const revoked = await a.inject({
    method: 'POST', url: REVOKE, headers: { authorization: basic(client.clientId, client.clientSecret) }, payload: { token }
  })
  t.equal(revoked.statusCode, 200, 'revocation succeeds on A')

  await assertDiesWithin(t, b, token, client, 'revoked token on B')
  await assertAlive(t, b, sibling, client, 'another token of the same client on B')
})

t.test('tokens of a credential deleted on one instance are refused on the other within 1 s, and so is its secret', async (t) => {
  const client = await registerClient(a, adminToken)
  const other = await addCredential(a, adminToken, client.clientId)
  const token = await tokenFor(b, client)
  const otherToken = await tokenFor(b, other)
  await assertAlive(t, b, token, client, 'before the credential is revoked')

  const deleted = await a.inject({ method: 'DELETE', url: `${selfUrl(client)}/credentials/${client.credentialId}`, headers: bearer(adminToken) })
  t.equal(deleted.statusCode, 204, 'credential revoked on A')

  await assertDiesWithin(t, b, token, client, 'token of the revoked credential on B')
  const secretRefused = await within(async () => (await requestToken(b, client)).statusCode === 401, LIMIT_MS)
  t.not(secretRefused, null, 'the revoked secret is refused on B within 1 s')
  const res = await requestToken(b, client)
  t.equal(res.statusCode, 401)
  t.equal((res.json() as { error: string }).error, 'invalid_client')
  await assertAlive(t, b, otherToken, other, 'a token of the agent\'s other credential on B')
})

t.test('suspension on one instance kills tokens on the other within 1 s; reactivation never revives them', async (t) => {
  const client = await registerClient(a, adminToken)
  const token = await tokenFor(b, client)
  await assertAlive(t, b, token, client, 'before suspension')

  const suspended = await a.inject({ method: 'PATCH', url: selfUrl(client), headers: bearer(adminToken), payload: { status: 'suspended' } })
  t.equal(suspended.statusCode, 200, 'suspended on A')
  await assertDiesWithin(t, b, token, client, 'token of the suspended agent on B')
  const refused = await requestToken(b, client)
  t.equal(refused.statusCode, 400, 'a suspended agent gets no token on B')
  t.equal((refused.json() as { error: string }).error, 'unauthorized_client')

  const reactivated = await a.inject({ method: 'PATCH', url: selfUrl(client), headers: bearer(adminToken), payload: { status: 'active' } })
  t.equal(reactivated.statusCode, 200, 'reactivated on A')
  // the fresh token is usually issued within the very second of the suspension: the edge that matters
  const fresh = await tokenFor(b, client)
  await assertAlive(t, b, fresh, client, 'a token obtained after reactivation')
  await assertAlive(t, a, fresh, client, 'the same fresh token on A')
  t.equal(await deadOn(b, token, client), true, 'the pre-suspension token stays dead on B after reactivation')
  t.equal(await deadOn(a, token, client), true, 'and on A')
})

t.test('a decommissioned agent\'s tokens and secret are refused on the other instance within 1 s', async (t) => {
  const client = await registerClient(a, adminToken)
  const token = await tokenFor(b, client)
  await assertAlive(t, b, token, client, 'before decommissioning')

  const deleted = await a.inject({ method: 'DELETE', url: selfUrl(client), headers: bearer(adminToken) })
  t.equal(deleted.statusCode, 204, 'decommissioned on A')

  await assertDiesWithin(t, b, token, client, 'token of the decommissioned agent on B')
  const res = await requestToken(b, client)
  t.equal(res.statusCode, 401, 'its secret is refused on B')
  t.equal((res.json() as { error: string }).error, 'invalid_client')
})

t.test('narrowing capabilities on one instance narrows live tokens on the other within 1 s', async (t) => {
  const client = await registerClient(a, adminToken, { capabilities: ['agents:read', 'docs:read'] })
  const token = await tokenFor(b, client)
  const before = await introspect(b, adminToken, token)
  t.equal((before.json() as { scope: string }).scope, 'agents:read docs:read', 'introspection on B reports the full scope')
  const listBefore = await b.inject({ method: 'GET', url: AGENTS, headers: bearer(token) })
  t.equal(listBefore.statusCode, 200, 'agents:read lets the token list agents on B')

  const narrowed = await a.inject({ method: 'PATCH', url: selfUrl(client), headers: bearer(adminToken), payload: { capabilities: ['docs:read'] } })
  t.equal(narrowed.statusCode, 200, 'capabilities narrowed on A')

  const elapsed = await within(async () => {
    const [intro, list] = await Promise.all([
      introspect(b, adminToken, token),
      b.inject({ method: 'GET', url: AGENTS, headers: bearer(token) })
    ])
    return (intro.json() as { scope?: string }).scope === 'docs:read' && list.statusCode === 403
  }, LIMIT_MS)
  t.not(elapsed, null, `narrowed on B within ${LIMIT_MS} ms (took ${elapsed} ms)`)
  const intro = await introspect(b, adminToken, token)
  t.match(intro.json(), { active: true, scope: 'docs:read', sub: client.clientId }, 'introspection reports the effective scope')
  const list = await b.inject({ method: 'GET', url: AGENTS, headers: bearer(token) })
  t.equal(list.statusCode, 403, 'the dropped scope no longer lists agents')
  t.match(list.headers['www-authenticate'], /error="insufficient_scope"/, '403 names insufficient_scope')
  const self = await selfRead(b, token, client)
  t.equal(self.statusCode, 200, 'self-service still works: the token itself is not revoked')
})

t.test('rotation on one instance stops the old secret on the other at once but leaves issued tokens valid', async (t) => {
  const client = await registerClient(a, adminToken)
  // B verifies the old secret once, so it remembers it: the remembered digest must not outlive rotation
  const token = await tokenFor(b, client)
  t.equal((await requestToken(b, client)).statusCode, 200, 'the old secret works on B before rotation')

  const rotated = await a.inject({
    method: 'POST', url: `${selfUrl(client)}/credentials/${client.credentialId}/rotate`, headers: bearer(adminToken)
  })
  t.equal(rotated.statusCode, 200, 'rotated on A')
  const newSecret = (rotated.json() as { clientSecret: string }).clientSecret
  t.not(newSecret, client.clientSecret, 'a new secret')

  const oldOnB = await requestToken(b, client)
  t.equal(oldOnB.statusCode, 401, 'the old secret is refused on B at once (no polling)')
  t.equal((oldOnB.json() as { error: string }).error, 'invalid_client', 'with invalid_client')
  t.equal((await requestToken(a, client)).statusCode, 401, 'and on A')
  const renewed = { ...client, clientSecret: newSecret }
  t.equal((await requestToken(b, renewed)).statusCode, 200, 'the new secret works on B')
  await assertAlive(t, b, token, client, 'a token issued before rotation on B')
  await assertAlive(t, a, token, client, 'and on A')
})
