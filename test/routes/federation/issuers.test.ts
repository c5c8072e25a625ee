import { generateKeyPairSync, randomUUID } from 'node:crypto'
import t from 'tap'
import { agentBody, build, mintToken, PLATFORM_SCOPES, seedAdmin, seedAgent, type TestApp } from '../../helper.js'
import { insertAgent } from '../../../repositories/agents.js'
import { assertProblem, assertValidationError, bearer } from '../agents/support.js'

const ISSUERS = '/api/v1/federation/issuers'
const issuerUrl = (issuerId: string) => `${ISSUERS}/${issuerId}`
const GITHUB = 'https://token.actions.githubusercontent.com'

const app = await build(t)
const admin = await seedAdmin(app)

function rsaKeys () {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return { publicJwk: publicKey.export({ format: 'jwk' }), privateJwk: privateKey.export({ format: 'jwk' }) }
}

let counter = 0
/** A valid creation body for a fresh issuer (its keys inline). */
function issuerBody (overrides: Record<string, unknown> = {}): Record<string, unknown> {
  counter += 1
  return {
    issuer: `https://oidc.example.com/cluster-${counter}-${randomUUID().slice(0, 8)}`,
    jwks: { keys: [{ ...rsaKeys().publicJwk, kid: 'key-1', alg: 'RS256', use: 'sig' }] },
    audiences: ['https://idp.example.com'],
    algorithms: ['RS256'],
    ...overrides
  }
}

const create = (payload: unknown, headers: Record<string, string> = admin.headers) =>
  app.inject({ method: 'POST', url: ISSUERS, headers, payload: payload as Record<string, unknown> })
const patch = (issuerId: string, payload: unknown, headers: Record<string, string> = admin.headers) =>
  app.inject({ method: 'PATCH', url: issuerUrl(issuerId), headers, payload: payload as Record<string, unknown> })
const remove = (issuerId: string, headers: Record<string, string> = admin.headers) =>
  app.inject({ method: 'DELETE', url: issuerUrl(issuerId), headers })

async function createIssuer (overrides: Record<string, unknown> = {}): Promise<Record<string, any>> {
  const res = await create(issuerBody(overrides))
  if (res.statusCode !== 201) throw new Error(`issuer not created: ${res.statusCode} ${res.body}`)
  return res.json()
}

interface EventRow { action: string, agent_id: string | null, outcome: string, metadata: Record<string, any> }

/** The federation events about one issuer, oldest first. */
async function issuerEvents (issuerId: string): Promise<EventRow[]> {
  const { rows } = await app.pg.query<EventRow>(
    "SELECT action, agent_id, outcome, metadata FROM audit_events WHERE metadata->>'issuerId' = $1 ORDER BY created_at, event_id", [issuerId])
  return rows
}

/** A federated subject of `agentId` under `issuer`, as a credentials row. */
async function addFederatedSubject (db: TestApp, agentId: string, issuer: string, subject = `repo:example/${randomUUID()}:ref:refs/heads/main`): Promise<string> {
  const credentialId = randomUUID()
  await db.pg.query(
    "INSERT INTO credentials (credential_id, client_id, kind, federated_issuer, federated_subject) VALUES ($1, $2, 'federated', $3, $4)",
    [credentialId, agentId, issuer, subject])
  return credentialId
}

async function credentialState (db: TestApp, credentialId: string): Promise<{ status: string, revoked_at: Date | null }> {
  const { rows } = await db.pg.query<{ status: string, revoked_at: Date | null }>('SELECT status, revoked_at FROM credentials WHERE credential_id = $1', [credentialId])
  return rows[0]
}

t.test('POST trusts an issuer: 201 with its id, the keys as given and a default maxLifetimeSeconds of 3600', async (t) => {
  const body = issuerBody()
  const res = await create(body)
  t.equal(res.statusCode, 201, res.body)
  const issuer = res.json()
  t.match(issuer, { issuer: body.issuer, jwks: body.jwks, discovery: false, audiences: body.audiences, algorithms: ['RS256'], maxLifetimeSeconds: 3600 })
  t.match(issuer.issuerId, /^[0-9a-f-]{36}$/)
  t.notOk('jwksUri' in issuer, 'no jwksUri when the keys are inline')
  t.type(issuer.createdAt, 'string')
  t.type(issuer.updatedAt, 'string')
})

t.test('POST takes a jwksUri, OIDC discovery, or a SPIFFE trust domain with its keys', async (t) => {
  const byUri = await create({ issuer: `${GITHUB}/${randomUUID()}`, jwksUri: `${GITHUB}/.well-known/jwks`, audiences: ['https://idp.example.com'], algorithms: ['RS256'], maxLifetimeSeconds: 600 })
  t.equal(byUri.statusCode, 201, byUri.body)
  t.match(byUri.json(), { jwksUri: `${GITHUB}/.well-known/jwks`, discovery: false, maxLifetimeSeconds: 600 })
  t.notOk('jwks' in byUri.json())

  const byDiscovery = await create({ issuer: GITHUB, discovery: true, audiences: ['https://idp.example.com'], algorithms: ['RS256'] })
  t.equal(byDiscovery.statusCode, 201, byDiscovery.body)
  t.match(byDiscovery.json(), { issuer: GITHUB, discovery: true })

  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const spiffe = await create({
    issuer: 'spiffe://prod.example.org',
    jwks: { keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'svid-1' }] },
    audiences: ['https://idp.example.com'],
    algorithms: ['ES256']
  })
  t.equal(spiffe.statusCode, 201, spiffe.body)
  t.equal(spiffe.json().issuer, 'spiffe://prod.example.org')
})

t.test('GET lists every issuer as {data}, ordered by issuer; GET one reads it back', async (t) => {
  const first = await createIssuer()
  const second = await createIssuer()
  const list = await app.inject({ method: 'GET', url: ISSUERS, headers: admin.headers })
  t.equal(list.statusCode, 200, list.body)
  t.same(Object.keys(list.json()), ['data'], 'no cursor: the list is whole')
  const issuers = list.json().data as Array<{ issuer: string, issuerId: string }>
  t.same(issuers.map((entry) => entry.issuer), issuers.map((entry) => entry.issuer).sort(), 'ordered by issuer')
  t.ok(issuers.some((entry) => entry.issuerId === first.issuerId) && issuers.some((entry) => entry.issuerId === second.issuerId))

  const read = await app.inject({ method: 'GET', url: issuerUrl(first.issuerId), headers: admin.headers })
  t.equal(read.statusCode, 200)
  t.same(read.json(), first)
})

t.test('PATCH changes audiences, algorithms and maxLifetimeSeconds, and writes one event naming the changed fields', async (t) => {
  const issuer = await createIssuer()
  const res = await patch(issuer.issuerId, { audiences: ['https://idp.example.com', 'https://idp.example.com/api/v1/token'], maxLifetimeSeconds: 900, algorithms: ['RS256', 'PS256'] })
  t.equal(res.statusCode, 200, res.body)
  t.match(res.json(), { issuerId: issuer.issuerId, issuer: issuer.issuer, jwks: issuer.jwks, maxLifetimeSeconds: 900, algorithms: ['RS256', 'PS256'] })
  t.same(res.json().audiences, ['https://idp.example.com', 'https://idp.example.com/api/v1/token'])
  const updated = (await issuerEvents(issuer.issuerId)).filter((event) => event.action === 'federation.issuer_updated')
  t.equal(updated.length, 1)
  t.same(updated[0].metadata.changed.sort(), ['algorithms', 'audiences', 'maxLifetimeSeconds'])
})

t.test('PATCH switching the key source clears the other sources', async (t) => {
  const issuer = await createIssuer()
  const toUri = await patch(issuer.issuerId, { jwksUri: 'https://oidc.example.com/keys' })
  t.equal(toUri.statusCode, 200, toUri.body)
  t.match(toUri.json(), { jwksUri: 'https://oidc.example.com/keys', discovery: false })
  t.notOk('jwks' in toUri.json(), 'the inline keys are gone')

  const toDiscovery = await patch(issuer.issuerId, { discovery: true })
  t.equal(toDiscovery.statusCode, 200, toDiscovery.body)
  t.match(toDiscovery.json(), { discovery: true })
  t.notOk('jwksUri' in toDiscovery.json(), 'the jwksUri is gone')

  const jwks = { keys: [rsaKeys().publicJwk] }
  const toJwks = await patch(issuer.issuerId, { jwks })
  t.equal(toJwks.statusCode, 200, toJwks.body)
  t.match(toJwks.json(), { jwks, discovery: false })

  const changes = (await issuerEvents(issuer.issuerId)).filter((event) => event.action === 'federation.issuer_updated').map((event) => event.metadata.changed.sort())
  t.same(changes, [['jwks', 'jwksUri'], ['discovery', 'jwksUri'], ['discovery', 'jwks']])
})

t.test('PATCH that changes nothing answers the issuer and writes no event', async (t) => {
  const issuer = await createIssuer()
  const res = await patch(issuer.issuerId, { audiences: issuer.audiences, maxLifetimeSeconds: issuer.maxLifetimeSeconds })
  t.equal(res.statusCode, 200, res.body)
  t.same(res.json(), issuer)
  t.same((await issuerEvents(issuer.issuerId)).map((event) => event.action), ['federation.issuer_created'])
})

t.test('each change writes exactly one federation event of its action, naming the caller', async (t) => {
  const issuer = await createIssuer()
  t.equal((await patch(issuer.issuerId, { maxLifetimeSeconds: 120 })).statusCode, 200)
  t.equal((await remove(issuer.issuerId)).statusCode, 204)
  const events = await issuerEvents(issuer.issuerId)
  t.same(events.map((event) => event.action), ['federation.issuer_created', 'federation.issuer_updated', 'federation.issuer_deleted'])
  for (const event of events) {
    t.equal(event.outcome, 'success')
    t.equal(event.agent_id, null, `${event.action}: about no agent`)
    t.equal(event.metadata.actorId, admin.agent.agentId, `${event.action}: names the caller`)
    t.equal(event.metadata.issuer, issuer.issuer)
  }
  t.match(events[0].metadata, { keySource: 'jwks', audiences: issuer.audiences, algorithms: ['RS256'], maxLifetimeSeconds: 3600 })
  t.same(events[1].metadata.changed, ['maxLifetimeSeconds'])
  t.equal(events[2].metadata.revokedSubjects, 0)
})

t.test('DELETE answers 204, and the issuer is gone', async (t) => {
  const issuer = await createIssuer()
  const res = await remove(issuer.issuerId)
  t.equal(res.statusCode, 204, res.body)
  t.equal(res.body, '')
  assertProblem(t, await app.inject({ method: 'GET', url: issuerUrl(issuer.issuerId), headers: admin.headers }), 404, 'FEDERATION_ISSUER_NOT_FOUND')
  assertProblem(t, await remove(issuer.issuerId), 404, 'FEDERATION_ISSUER_NOT_FOUND')
})

t.test('DELETE revokes the federated subjects of that issuer, and their tokens stop at once; other issuers\' subjects stay active', async (t) => {
  const created = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: admin.headers, payload: agentBody({ capabilities: ['docs:read'] }) })
  t.equal(created.statusCode, 201, created.body)
  const agentId: string = created.json().agentId
  const other = await seedAgent(app)
  const doomed = await createIssuer()
  const kept = await createIssuer()
  const doomedSubjects = [await addFederatedSubject(app, agentId, doomed.issuer), await addFederatedSubject(app, other.agent.agentId, doomed.issuer)]
  const keptSubject = await addFederatedSubject(app, agentId, kept.issuer)
  const secret = randomUUID()
  await app.pg.query("INSERT INTO credentials (credential_id, client_id, secret_hash) VALUES ($1, $2, 'argon2id-placeholder')", [secret, agentId])

  // a token obtained through the doomed issuer's subject, and one through the kept one
  const doomedToken = await mintToken(app, agentId, { scope: 'docs:read' }, { credentialId: doomedSubjects[0] })
  const keptToken = await mintToken(app, agentId, { scope: 'docs:read' }, { credentialId: keptSubject })
  const selfRead = (token: string) => app.inject({ method: 'GET', url: `/api/v1/agents/${agentId}`, headers: bearer(token) })
  t.equal((await selfRead(doomedToken)).statusCode, 200, 'the federated token works before')

  t.equal((await remove(doomed.issuerId)).statusCode, 204)

  for (const credentialId of doomedSubjects) {
    const state = await credentialState(app, credentialId)
    t.equal(state.status, 'revoked', `subject ${credentialId} is revoked`)
    t.ok(state.revoked_at instanceof Date, 'with a revocation time')
  }
  t.equal((await credentialState(app, keptSubject)).status, 'active', 'another issuer\'s subject stays active')
  t.equal((await credentialState(app, secret)).status, 'active', 'the agent\'s secret stays active')
  t.equal((await selfRead(doomedToken)).statusCode, 401, 'the token of a revoked subject stops at once')
  t.equal((await selfRead(keptToken)).statusCode, 200, 'the token of another issuer\'s subject keeps working')

  const deleted = (await issuerEvents(doomed.issuerId)).filter((event) => event.action === 'federation.issuer_deleted')
  t.equal(deleted.length, 1)
  t.equal(deleted[0].metadata.revokedSubjects, 2)
  const { rows } = await app.pg.query<EventRow>(
    "SELECT action, agent_id, outcome, metadata FROM audit_events WHERE action = 'credential.revoked' AND metadata->>'issuerId' = $1", [doomed.issuerId])
  t.same(rows.map((row) => row.metadata.credentialId).sort(), [...doomedSubjects].sort(), 'one credential.revoked per revoked subject')
  t.same(rows.map((row) => row.agent_id).sort(), [agentId, other.agent.agentId].sort(), 'each in its agent\'s trail')
  t.ok(rows.every((row) => row.metadata.reason === 'federation_issuer_deleted'))
})

t.test('DELETE that would revoke the last usable admin\'s only credential is a 409 CONFLICT and changes nothing', async (t) => {
  const own = await build(t)
  const lastAdmin = await insertAgent(own.pg, agentBody({ capabilities: [...PLATFORM_SCOPES], owner: 'platform' }) as never)
  const issuer = GITHUB
  const subject = await addFederatedSubject(own, lastAdmin.agentId, issuer)
  const headers = bearer(await mintToken(own, lastAdmin.agentId, {}, { credentialId: subject }))
  const created = await own.inject({ method: 'POST', url: ISSUERS, headers, payload: { issuer, discovery: true, audiences: ['https://idp.example.com'], algorithms: ['RS256'] } })
  t.equal(created.statusCode, 201, created.body)

  const res = await own.inject({ method: 'DELETE', url: issuerUrl(created.json().issuerId), headers })
  assertProblem(t, res, 409, 'CONFLICT')
  t.equal((await credentialState(own, subject)).status, 'active', 'the subject stays active')
  t.equal((await own.inject({ method: 'GET', url: issuerUrl(created.json().issuerId), headers })).statusCode, 200, 'the issuer stays')
  const { rows } = await own.pg.query<EventRow>("SELECT action, agent_id, outcome, metadata FROM audit_events WHERE action LIKE 'federation.%' OR action = 'access.denied' ORDER BY created_at")
  t.same(rows.map((row) => row.action), ['federation.issuer_created', 'access.denied'], 'the refusal is audited, no deletion is')
  t.match(rows[1].metadata, { reason: 'last_admin' })
})

t.test('401 without a token; 403 with agents:read only, on every operation', async (t) => {
  const issuer = await createIssuer()
  const reader = await seedAgent(app, { capabilities: ['agents:read'] })
  const operations = [
    { method: 'POST' as const, url: ISSUERS, payload: issuerBody() },
    { method: 'GET' as const, url: ISSUERS },
    { method: 'GET' as const, url: issuerUrl(issuer.issuerId) },
    { method: 'PATCH' as const, url: issuerUrl(issuer.issuerId), payload: { maxLifetimeSeconds: 60 } },
    { method: 'DELETE' as const, url: issuerUrl(issuer.issuerId) }
  ]
  for (const operation of operations) {
    const anonymous = await app.inject(operation)
    assertProblem(t, anonymous, 401, 'UNAUTHORIZED')
    const forbidden = await app.inject({ ...operation, headers: reader.headers })
    assertProblem(t, forbidden, 403, 'FORBIDDEN')
    t.match(forbidden.headers['www-authenticate'], /insufficient_scope.*agents:write/, `${operation.method} ${operation.url}: names agents:write`)
  }
  t.same((await issuerEvents(issuer.issuerId)).map((event) => event.action), ['federation.issuer_created'], 'nothing changed')
})

t.test('POST refuses an issuer that is not https (or a SPIFFE trust domain), with a query or fragment, or too long', async (t) => {
  for (const issuer of ['http://oidc.example.com', 'https://oidc.example.com/?tenant=a', 'https://oidc.example.com/#x', 'https://user@oidc.example.com',
    'spiffe://Prod.Example.org', 'spiffe://prod.example.org/workload', 'oidc.example.com', `https://oidc.example.com/${'a'.repeat(2048)}`, 'https://oidc.example.com:99999']) {
    assertValidationError(t, await create(issuerBody({ issuer })), 'body.issuer')
  }
})

t.test('POST refuses a JWK Set with a private member, naming it', async (t) => {
  const { privateJwk } = rsaKeys()
  const res = await create(issuerBody({ jwks: { keys: [privateJwk] } }))
  assertValidationError(t, res, 'body.jwks.keys[0].d')
  t.notMatch(res.body, String(privateJwk.d), 'the private member is not echoed')
})

t.test('POST refuses a key that fits none of the algorithms, and an algorithm outside the list', async (t) => {
  assertValidationError(t, await create(issuerBody({ algorithms: ['ES256'] })), /^body\.jwks\.keys\[0\]/)
  assertValidationError(t, await create(issuerBody({ algorithms: ['HS256'] })), /^body\.algorithms/)
  assertValidationError(t, await create(issuerBody({ algorithms: ['none'] })), /^body\.algorithms/)
  assertValidationError(t, await create(issuerBody({ algorithms: [] })), 'body.algorithms')
  assertValidationError(t, await create(issuerBody({ algorithms: ['RS256', 'RS256'] })), 'body.algorithms')
  const { algorithms, ...withoutAlgorithms } = issuerBody()
  t.ok(algorithms)
  assertValidationError(t, await create(withoutAlgorithms), 'body.algorithms')
})

t.test('POST refuses two key sources, none, and discovery for a SPIFFE trust domain', async (t) => {
  assertValidationError(t, await create(issuerBody({ jwksUri: 'https://oidc.example.com/keys' })), 'body')
  assertValidationError(t, await create(issuerBody({ discovery: true })), 'body')
  const { jwks, ...withoutKeys } = issuerBody()
  t.ok(jwks)
  assertValidationError(t, await create(withoutKeys), 'body')
  assertValidationError(t, await create({ ...withoutKeys, discovery: false }), 'body')
  assertValidationError(t, await create({ ...withoutKeys, issuer: 'spiffe://prod.example.org', discovery: true }), 'body.discovery')
  assertValidationError(t, await create({ ...withoutKeys, jwksUri: 'http://oidc.example.com/keys' }), 'body.jwksUri')
})

t.test('POST refuses an unknown field, empty or bad audiences and an out-of-range maxLifetimeSeconds', async (t) => {
  assertValidationError(t, await create(issuerBody({ subject: 'repo:example/app' })), 'body.subject')
  assertValidationError(t, await create(issuerBody({ audiences: [] })), 'body.audiences')
  assertValidationError(t, await create(issuerBody({ audiences: [''] })), /^body\.audiences/)
  assertValidationError(t, await create(issuerBody({ audiences: Array.from({ length: 11 }, (_, i) => `https://idp.example.com/${i}`) })), 'body.audiences')
  assertValidationError(t, await create(issuerBody({ maxLifetimeSeconds: 59 })), 'body.maxLifetimeSeconds')
  assertValidationError(t, await create(issuerBody({ maxLifetimeSeconds: 86401 })), 'body.maxLifetimeSeconds')
})

t.test('POST of an issuer already trusted is a 409 FEDERATION_ISSUER_ALREADY_EXISTS and writes no event', async (t) => {
  const body = issuerBody()
  t.equal((await create(body)).statusCode, 201)
  const { rows: before } = await app.pg.query("SELECT count(*)::int AS count FROM audit_events WHERE action = 'federation.issuer_created'")
  assertProblem(t, await create({ ...body, jwks: undefined, discovery: true }), 409, 'FEDERATION_ISSUER_ALREADY_EXISTS')
  const { rows: after } = await app.pg.query("SELECT count(*)::int AS count FROM audit_events WHERE action = 'federation.issuer_created'")
  t.same(after, before)
})

t.test('PATCH refuses issuer (immutable), unknown fields, an empty body, two sources and keys that no longer fit', async (t) => {
  const issuer = await createIssuer()
  assertValidationError(t, await patch(issuer.issuerId, { issuer: 'https://other.example.com' }), 'body.issuer')
  assertValidationError(t, await patch(issuer.issuerId, { createdAt: '2026-01-01T00:00:00Z' }), 'body.createdAt')
  assertValidationError(t, await patch(issuer.issuerId, {}))
  assertValidationError(t, await patch(issuer.issuerId, { audiences: [] }), 'body.audiences')
  assertValidationError(t, await patch(issuer.issuerId, { jwksUri: 'https://oidc.example.com/keys', discovery: true }), 'body')
  assertValidationError(t, await patch(issuer.issuerId, { algorithms: ['ES256'] }), /^body\.algorithms/)
  assertValidationError(t, await patch(issuer.issuerId, { jwks: { keys: [rsaKeys().privateJwk] } }), 'body.jwks.keys[0].d')
  const read = await app.inject({ method: 'GET', url: issuerUrl(issuer.issuerId), headers: admin.headers })
  t.same(read.json(), issuer, 'unchanged')
  t.same((await issuerEvents(issuer.issuerId)).map((event) => event.action), ['federation.issuer_created'])

  const discovered = await createIssuer({ jwks: undefined, discovery: true })
  assertValidationError(t, await patch(discovered.issuerId, { discovery: false }), 'body.discovery')
})

t.test('an unknown issuer id is a 404 FEDERATION_ISSUER_NOT_FOUND; a malformed one a 400', async (t) => {
  const unknown = randomUUID()
  assertProblem(t, await app.inject({ method: 'GET', url: issuerUrl(unknown), headers: admin.headers }), 404, 'FEDERATION_ISSUER_NOT_FOUND')
  assertProblem(t, await patch(unknown, { maxLifetimeSeconds: 60 }), 404, 'FEDERATION_ISSUER_NOT_FOUND')
  assertProblem(t, await remove(unknown), 404, 'FEDERATION_ISSUER_NOT_FOUND')
  assertValidationError(t, await app.inject({ method: 'GET', url: issuerUrl('not-a-uuid'), headers: admin.headers }), 'params.issuerId')
})
