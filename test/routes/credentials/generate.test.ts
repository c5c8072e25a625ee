import t from 'tap'
import { agentBody, build, seedAdmin, sharedVault } from '../../helper.js'
import { assertProblem, assertValidationError, UNKNOWN_AGENT } from '../agents/support.js'
import {
  accessToken, allAuditText, auditRows, credentialsUrl, credentialUrl, registerClient, requestToken
} from '../oauth/support.js'

const CREDENTIAL_FIELDS = ['clientId', 'createdAt', 'credentialId', 'expiresAt', 'revokedAt', 'status']
const SECRET = /^sk_live_[A-Za-z0-9_-]+$/

const app = await build(t)
const admin = await seedAdmin(app)

/** A fresh agent without any credential yet. */
async function newAgent (): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: admin.headers, payload: agentBody() })
  if (res.statusCode !== 201) throw new Error(res.body)
  return res.json().agentId
}

const generate = (agentId: string, payload?: Record<string, unknown>) =>
  app.inject({ method: 'POST', url: credentialsUrl(agentId), headers: admin.headers, ...(payload === undefined ? {} : { payload }) })

t.test('generating a credential: 201 with the Credential fields and a clientSecret, Cache-Control: no-store', async (t) => {
  const agentId = await newAgent()
  const res = await generate(agentId)

  t.equal(res.statusCode, 201, res.body)
  t.equal(res.headers['cache-control'], 'no-store')
  const body = res.json()
  t.same(Object.keys(body).sort(), [...CREDENTIAL_FIELDS, 'clientSecret'].sort())
  t.match(body, { clientId: agentId, status: 'active', expiresAt: null, revokedAt: null })
  t.ok(Math.abs(Date.parse(body.createdAt) - Date.now()) < 60_000, 'createdAt is now')
})

t.test('the secret is sk_live_ + base64url carrying at least 256 bits, different every time, and it obtains a token', async (t) => {
  const agentId = await newAgent()
  const first = (await generate(agentId)).json()
  const second = (await generate(agentId)).json()

  for (const { clientSecret } of [first, second]) {
    t.match(clientSecret, SECRET)
    const bytes = Buffer.from(clientSecret.slice('sk_live_'.length), 'base64url')
    t.ok(bytes.length >= 32, `at least 32 bytes once decoded (${bytes.length})`)
    t.equal(bytes.toString('base64url'), clientSecret.slice('sk_live_'.length), 'canonical unpadded base64url')
  }
  t.not(first.clientSecret, second.clientSecret)
  const res = await requestToken(app, { agentId, secret: second.clientSecret })
  t.equal(res.statusCode, 200, res.body)
})

t.test('an optional future expiresAt is kept; a past one is a 400 VALIDATION_ERROR that creates nothing', async (t) => {
  const agentId = await newAgent()
  const expiresAt = new Date(Date.now() + 7 * 86_400_000).toISOString()
  const res = await generate(agentId, { expiresAt })
  t.equal(res.statusCode, 201, res.body)
  t.equal(Date.parse(res.json().expiresAt), Date.parse(expiresAt))
  t.equal(res.json().status, 'active')

  assertValidationError(t, await generate(agentId, { expiresAt: new Date(Date.now() - 60_000).toISOString() }), 'body.expiresAt')
  assertValidationError(t, await generate(agentId, { expiresAt: 'next tuesday' }))
  assertValidationError(t, await generate(agentId, { expiresAt, clientSecret: 'sk_live_mine' }))
  // spellings Date.parse can't read were once let through as "not in the past" (issue 11, defect 9)
  assertValidationError(t, await generate(agentId, { expiresAt: '2020-06-30T23:59:60Z' }), 'body.expiresAt')
  assertValidationError(t, await generate(agentId, { expiresAt: '2020-01-01T00:00:00+00' }), 'body.expiresAt')
  // PostgreSQL refuses offsets beyond ±15:59: a 400, never a 500
  const far = new Date(Date.now() + 86_400_000).toISOString().slice(0, 19)
  assertValidationError(t, await generate(agentId, { expiresAt: `${far}+16:00` }), 'body.expiresAt')
  const listed = (await app.inject({ method: 'GET', url: credentialsUrl(agentId), headers: admin.headers })).json()
  t.equal(listed.data.length, 1, 'only the valid request created a credential')
})

t.test('a future expiresAt written with a leap second or an offset without minutes is kept as the instant it names', async (t) => {
  const agentId = await newAgent()
  const res = await generate(agentId, { expiresAt: '2099-06-30T23:59:60+00' })
  t.equal(res.statusCode, 201, res.body)
  t.equal(res.json().expiresAt, '2099-07-01T00:00:00.000Z')
})

t.test('the list holds every credential of the agent and never a secret', async (t) => {
  const agentId = await newAgent()
  const secrets: string[] = []
  const ids: string[] = []
  for (let i = 0; i < 3; i += 1) {
    const created = (await generate(agentId)).json()
    secrets.push(created.clientSecret)
    ids.push(created.credentialId)
  }
  t.equal((await app.inject({ method: 'DELETE', url: credentialUrl(agentId, ids[0]), headers: admin.headers })).statusCode, 204)

  const res = await app.inject({ method: 'GET', url: credentialsUrl(agentId), headers: admin.headers })
  t.equal(res.statusCode, 200, res.body)
  const { data } = res.json()
  t.same(data.map((entry: { credentialId: string }) => entry.credentialId).sort(), [...ids].sort())
  for (const entry of data) t.same(Object.keys(entry).sort(), CREDENTIAL_FIELDS, 'no clientSecret field')
  t.match(data.find((entry: { credentialId: string }) => entry.credentialId === ids[0]), { status: 'revoked', revokedAt: String })
  for (const secret of secrets) t.notOk(res.body.includes(secret.slice('sk_live_'.length)), 'no secret in the body')
  t.notOk(res.body.includes('sk_live_'))
})

t.test('the list shows a credential past its expiry as expired', async (t) => {
  const agentId = await newAgent()
  const created = (await generate(agentId)).json()
  await app.pg.query("UPDATE credentials SET expires_at = now() - interval '1 second' WHERE credential_id = $1", [created.credentialId])
  const { data } = (await app.inject({ method: 'GET', url: credentialsUrl(agentId), headers: admin.headers })).json()
  t.equal(data[0].status, 'expired')
})

t.test('an agent holds at most 5 active credentials: the sixth is a 409; revoked and expired ones free a place', async (t) => {
  const agentId = await newAgent()
  const ids: string[] = []
  for (let i = 0; i < 5; i += 1) {
    const res = await generate(agentId)
    t.equal(res.statusCode, 201, `credential ${i + 1}`)
    ids.push(res.json().credentialId)
  }
  assertProblem(t, await generate(agentId), 409)
  const count = async () => (await app.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM credentials WHERE client_id = $1', [agentId])).rows[0].n
  t.equal(await count(), 5, 'the refused request stored nothing')

  t.equal((await app.inject({ method: 'DELETE', url: credentialUrl(agentId, ids[0]), headers: admin.headers })).statusCode, 204)
  t.equal((await generate(agentId)).statusCode, 201, 'a revoked credential does not count')
  assertProblem(t, await generate(agentId), 409)

  await app.pg.query("UPDATE credentials SET expires_at = now() - interval '1 second' WHERE credential_id = $1", [ids[1]])
  t.equal((await generate(agentId)).statusCode, 201, 'an expired credential does not count')
})

t.test(`${sharedVault === null ? 'PostgreSQL' : 'Vault (TEST_VAULT=1)'} holds an argon2id hash (m >= 19456 KiB, t >= 2) and never the secret`, async (t) => {
  const agentId = await newAgent()
  const created = (await generate(agentId)).json()
  const { rows } = await app.pg.query<{ secret_hash: string | null, vault_path: string | null, row: string }>(
    'SELECT secret_hash, vault_path, to_jsonb(c)::text AS row FROM credentials c WHERE credential_id = $1', [created.credentialId])
  // with Vault on, the row names the KV v2 secret that holds the hash, and holds no hash itself
  const stored = sharedVault === null ? rows[0].secret_hash ?? '' : String(sharedVault.read(rows[0].vault_path ?? '')?.argon2id ?? '')
  if (sharedVault !== null) {
    t.equal(rows[0].secret_hash, null, 'no hash in PostgreSQL')
    t.notOk(JSON.stringify(sharedVault.read(rows[0].vault_path ?? '')).includes(created.clientSecret.slice('sk_live_'.length)), 'Vault does not hold the secret')
  }

  // a PHC string; argon2 0.45 writes its parameters as m,p,t (earlier releases m,t,p)
  const match = /^\$argon2id\$v=19\$([a-z]=\d+(?:,[a-z]=\d+)*)\$/.exec(stored)
  t.ok(match !== null, `an argon2id PHC string: ${stored.slice(0, 32)}…`)
  const parameters = Object.fromEntries((match?.[1] ?? '').split(',').map((pair) => pair.split('=')))
  t.ok(Number(parameters.m) >= 19_456, `m = ${parameters.m}`)
  t.ok(Number(parameters.t) >= 2, `t = ${parameters.t}`)
  const random = created.clientSecret.slice('sk_live_'.length)
  t.notOk(rows[0].row.includes(random), 'the row does not hold the secret')
  t.notOk(rows[0].row.includes(Buffer.from(random, 'base64url').toString('hex')), 'nor its bytes in hex')
})

t.test('generation writes exactly one credential.generated event, naming agent, credential and caller, without the secret', async (t) => {
  const agentId = await newAgent()
  const created = (await generate(agentId)).json()
  const events = await auditRows(app, 'credential.generated', { metadataKey: 'credentialId', metadataValue: created.credentialId })
  t.equal(events.length, 1)
  t.match(events[0], { agent_id: agentId, outcome: 'success', metadata: { actorId: admin.agent.agentId } })
  t.notOk((await allAuditText(app)).includes(created.clientSecret.slice('sk_live_'.length)), 'no audit row holds the secret')
})

t.test('an unknown agent is a 404 AGENT_NOT_FOUND for generate and list; a malformed id is a 400', async (t) => {
  assertProblem(t, await generate(UNKNOWN_AGENT), 404, 'AGENT_NOT_FOUND')
  assertProblem(t, await app.inject({ method: 'GET', url: credentialsUrl(UNKNOWN_AGENT), headers: admin.headers }), 404, 'AGENT_NOT_FOUND')
  assertValidationError(t, await generate('not-a-uuid'))
})

t.test('a decommissioned agent gets no new credential: 409 AGENT_ALREADY_DECOMMISSIONED', async (t) => {
  const agentId = await newAgent()
  const gone = await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agentId}`, headers: admin.headers })
  t.equal(gone.statusCode, 204, gone.body)
  assertProblem(t, await generate(agentId), 409, 'AGENT_ALREADY_DECOMMISSIONED')
})

t.test('a caller without credentials:write or self-service may not generate for another agent', async (t) => {
  const agentId = await newAgent()
  const reader = await registerClient(app, admin.headers, { capabilities: ['credentials:read', 'agents:read'] })
  const token = await accessToken(app, reader)
  const res = await app.inject({ method: 'POST', url: credentialsUrl(agentId), headers: { authorization: `Bearer ${token}` } })
  assertProblem(t, res, 403, 'FORBIDDEN')
  const listed = await app.inject({ method: 'GET', url: credentialsUrl(agentId), headers: { authorization: `Bearer ${token}` } })
  t.equal(listed.statusCode, 200, 'credentials:read may list')
  t.same(listed.json().data, [])
})
