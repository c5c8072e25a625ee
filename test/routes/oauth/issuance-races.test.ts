import t, { type Test } from 'tap'
import pg from 'pg'
import { build, type TestApp } from '../../helper.js'
import type { LightMyRequestResponse } from 'fastify'
import { accessToken, bootstrapClient, registerClient, requestToken, type Client, type TokenCall } from './support.js'

/**
 * A change to a client that commits while its token request is between authentication and the
 * durable write must win: no token leaves after a suspension, a revocation or a rotation commits
 * (issue 11, defect 3). The change is staged in a transaction of our own that holds the agent's or
 * the credential's row lock, exactly as the management API's change does; the token request
 * authenticates (its directory read is not blocked), reaches the issuance write and waits there;
 * then the change commits.
 */
async function changeWhileIssuing (t: Test, app: TestApp, client: Client, lock: string, change: string, call: TokenCall = {}): Promise<LightMyRequestResponse> {
  const db = new pg.Client({ connectionString: app.databaseUrl })
  await db.connect()
  t.teardown(() => db.end())
  await db.query('BEGIN')
  const { rows: [{ pid }] } = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
  await db.query(lock, [client.agentId, client.credentialId])
  const pending = requestToken(app, client, call)
  const deadline = Date.now() + 60_000
  // the issuance write is waiting for our lock: the request authenticated before the change
  while ((await app.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))', [pid])).rows[0].n === 0) {
    if (Date.now() > deadline) throw new Error('the token request never reached the issuance write')
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  await db.query(change, [client.agentId, client.credentialId])
  await db.query('COMMIT')
  return await pending
}

const LOCK_AGENT = 'SELECT 1 FROM agents WHERE agent_id = $1 AND $2::uuid IS NOT NULL FOR UPDATE'
const LOCK_CREDENTIAL = 'SELECT 1 FROM credentials WHERE client_id = $1 AND credential_id = $2 FOR UPDATE'

async function setUp (t: Test, overrides: Record<string, unknown> = {}) {
  const app = await build(t)
  const admin = await bootstrapClient(app)
  const client = await registerClient(app, admin.headers, overrides)
  // remembered: the next authentication needs no argon2, as on the hot path
  await accessToken(app, client)
  return { app, client }
}

async function issuedSince (app: TestApp, agentId: string, since: Date): Promise<number> {
  const { rows } = await app.pg.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM audit_events WHERE action = 'token.issued' AND agent_id = $1 AND created_at >= $2", [agentId, since])
  return rows[0].n
}

t.test('a suspension committing during the issuance write refuses the token (401) and records no issuance', async (t) => {
  const { app, client } = await setUp(t)
  const since = new Date()
  const { statusCode: status } = await changeWhileIssuing(t, app, client, LOCK_AGENT,
    "UPDATE agents SET status = 'suspended', tokens_valid_after = now() WHERE agent_id = $1 AND $2::uuid IS NOT NULL")
  t.equal(status, 401)
  t.equal(await issuedSince(app, client.agentId, since), 0, 'no token.issued event')
  const { rows } = await app.pg.query("SELECT metadata->>'reason' AS reason FROM audit_events WHERE action = 'auth.failed' AND agent_id = $1", [client.agentId])
  t.same(rows.map((row) => row.reason), ['client_changed_during_issuance'], 'the refusal is audited')
})

t.test('a revocation committing during the issuance write refuses the token', async (t) => {
  const { app, client } = await setUp(t)
  const since = new Date()
  const { statusCode: status } = await changeWhileIssuing(t, app, client, LOCK_CREDENTIAL,
    "UPDATE credentials SET status = 'revoked', revoked_at = now() WHERE client_id = $1 AND credential_id = $2")
  t.equal(status, 401)
  t.equal(await issuedSince(app, client.agentId, since), 0)
})

t.test('a rotation committing during the issuance write refuses the old secret\'s token', async (t) => {
  const { app, client } = await setUp(t)
  const since = new Date()
  const { statusCode: status } = await changeWhileIssuing(t, app, client, LOCK_CREDENTIAL,
    // what a rotation changes: the hash in the row, or (TEST_VAULT=1) the Vault version the row names
    "UPDATE credentials SET secret_hash = 'rotated-' || secret_hash, vault_version = vault_version + 1, rotated_at = now() WHERE client_id = $1 AND credential_id = $2")
  t.equal(status, 401)
  t.equal(await issuedSince(app, client.agentId, since), 0)
})

const NARROW = "UPDATE agents SET capabilities = ARRAY['docs:read'], updated_at = now() WHERE agent_id = $1 AND $2::uuid IS NOT NULL"

t.test('a narrowing of capabilities committing during the issuance write refuses a token that would carry the removed scope', async (t) => {
  // found by test/resilience/races.test.ts: 18 of 29 tokens racing a PATCH {capabilities} carried
  // the removed scope although their issuance committed after the narrowing
  const { app, client } = await setUp(t, { capabilities: ['docs:read', 'docs:write'] })
  const since = new Date()
  const res = await changeWhileIssuing(t, app, client, LOCK_AGENT, NARROW)
  t.equal(res.statusCode, 400, res.body)
  t.equal(res.json().error, 'invalid_scope')
  t.equal(await issuedSince(app, client.agentId, since), 0, 'no token.issued event')
  const { rows } = await app.pg.query("SELECT metadata->>'reason' AS reason, metadata->'requestedScopes' AS scopes FROM audit_events WHERE action = 'access.denied' AND agent_id = $1", [client.agentId])
  t.same(rows, [{ reason: 'capabilities_changed_during_issuance', scopes: ['docs:read', 'docs:write'] }], 'the refusal is audited')
  // the management API announces its changes to the client directory; our own UPDATE does it here
  await app.clientDirectory.changed({ agentId: client.agentId })
  const again = await requestToken(app, client)
  t.equal(again.statusCode, 200, 'asked again, the client gets a token')
  t.equal(again.json().scope, 'docs:read', 'with the capabilities it has now')
})

t.test('a narrowing that leaves the scopes asked for covered does not refuse the token', async (t) => {
  const { app, client } = await setUp(t, { capabilities: ['docs:read', 'docs:write'] })
  const since = new Date()
  const res = await changeWhileIssuing(t, app, client, LOCK_AGENT, NARROW, { fields: { scope: 'docs:read' } })
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().scope, 'docs:read')
  t.equal(await issuedSince(app, client.agentId, since), 1, 'its token.issued event')
})
