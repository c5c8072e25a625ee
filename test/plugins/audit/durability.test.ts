import { randomUUID } from 'node:crypto'
import t from 'tap'
import pg from 'pg'
import { agentBody, build, seedAdmin, type TestApp } from '../../helper.js'
import { insertCredential } from '../../../repositories/credentials.js'
import { hashSecret, generateSecret } from '../../../services/secrets.js'

/**
 * The durability argument, tested: a change and its event are written in one transaction (both or
 * neither), and an event with no change to go with it (a refusal, a failed authentication, an
 * issued token) is committed before the response leaves. Every check reads the database through
 * a separate connection the moment the response arrives: what it sees is committed.
 */
const app = await build(t, { env: { RATE_LIMIT_TOKEN_PER_CLIENT: '0', RATE_LIMIT_AUTH_FAILURES_PER_IP: '0' } })
const admin = await seedAdmin(app)
const observer = new pg.Client({ connectionString: app.databaseUrl })
await observer.connect()
t.teardown(() => observer.end())

async function eventsAbout (agentId: string): Promise<Array<{ action: string, outcome: string }>> {
  return (await observer.query('SELECT action, outcome FROM audit_events WHERE agent_id = $1 ORDER BY created_at, event_id', [agentId])).rows
}

async function withTrigger (t: { teardown (fn: () => unknown): void }, sql: string, drop: string): Promise<void> {
  await app.pg.query(sql)
  t.teardown(() => app.pg.query(drop))
}

async function newAgent (): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: admin.headers, payload: agentBody() })
  return res.json().agentId
}

t.test('a change whose transaction fails at commit leaves no event, and nothing changed', async (t) => {
  const agentId = await newAgent()
  // a deferred constraint trigger fails the transaction at COMMIT, after the event was inserted in it
  await withTrigger(t, `
    CREATE FUNCTION refuse_at_commit () RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$;
    CREATE CONSTRAINT TRIGGER refuse_version_change AFTER UPDATE ON agents DEFERRABLE INITIALLY DEFERRED
      FOR EACH ROW WHEN (NEW.version = '9.9.9') EXECUTE FUNCTION refuse_at_commit ()`,
  'DROP TRIGGER refuse_version_change ON agents; DROP FUNCTION refuse_at_commit ()')
  const before = await eventsAbout(agentId)
  const res = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agentId}`, headers: admin.headers, payload: { version: '9.9.9' } })
  t.equal(res.statusCode, 500)
  t.same(await eventsAbout(agentId), before, 'no agent.updated event')
  t.equal((await observer.query('SELECT version FROM agents WHERE agent_id = $1', [agentId])).rows[0].version, '1.0.0', 'no change')
})

t.test('an event that cannot be written undoes its change', async (t) => {
  const agentId = await newAgent()
  await withTrigger(t, `
    CREATE FUNCTION refuse_event () RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit write failed'; END $$;
    CREATE TRIGGER refuse_suspension_event BEFORE INSERT ON audit_events
      FOR EACH ROW WHEN (NEW.action = 'agent.suspended') EXECUTE FUNCTION refuse_event ()`,
  'DROP TRIGGER refuse_suspension_event ON audit_events; DROP FUNCTION refuse_event ()')
  const res = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agentId}`, headers: admin.headers, payload: { status: 'suspended' } })
  t.equal(res.statusCode, 500)
  t.equal((await observer.query('SELECT status FROM agents WHERE agent_id = $1', [agentId])).rows[0].status, 'active', 'still active: no change without its event')
})

t.test('a successful change and its event are both committed when the response arrives', async (t) => {
  const agentId = await newAgent()
  const res = await app.inject({ method: 'DELETE', url: `/api/v1/agents/${agentId}`, headers: admin.headers })
  t.equal(res.statusCode, 204)
  t.same((await eventsAbout(agentId)).map((event) => event.action), ['agent.created', 'agent.decommissioned'])
})

t.test('refusals and failed authentications are committed before their response', async (t) => {
  const agentId = await newAgent()
  const weak = await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${admin.token.slice(0, -4)}AAAA` } })
  t.equal(weak.statusCode, 401)
  const { rows } = await observer.query("SELECT count(*)::int AS n FROM audit_events WHERE action = 'auth.failed' AND agent_id = $1", [admin.agent.agentId])
  t.equal(rows[0].n, 1, 'auth.failed (bad signature) visible at once')
  const token = await app.inject({ method: 'POST', url: '/api/v1/token', payload: { grant_type: 'client_credentials', client_id: agentId, client_secret: 'sk_live_wrong' } })
  t.equal(token.statusCode, 401)
  t.same((await eventsAbout(agentId)).filter((event) => event.action === 'auth.failed'), [{ action: 'auth.failed', outcome: 'failure' }])
})

t.test('a token leaves only after its token.issued event is committed; when that write fails, no token leaves', async (t) => {
  const agentId = await newAgent()
  const credentialId = randomUUID()
  const secret = generateSecret(credentialId)
  await insertCredential(app.pg, { credentialId, clientId: agentId, secretHash: await hashSecret(secret), expiresAt: null })
  const ask = () => app.inject({ method: 'POST', url: '/api/v1/token', payload: { grant_type: 'client_credentials', client_id: agentId, client_secret: secret } })

  const issued = await Promise.all(Array.from({ length: 20 }, ask))
  const jtis = issued.map((res) => JSON.parse(Buffer.from(res.json().access_token.split('.')[1], 'base64url').toString()).jti)
  const { rows } = await observer.query("SELECT metadata->>'jti' AS jti FROM audit_events WHERE action = 'token.issued' AND agent_id = $1", [agentId])
  t.same(rows.map((row) => row.jti).sort(), [...jtis].sort(), 'every token answered has its committed event, and only those')

  await withTrigger(t, `
    CREATE FUNCTION refuse_issuance () RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$;
    CREATE TRIGGER refuse_issuance BEFORE INSERT ON audit_events FOR EACH ROW WHEN (NEW.action = 'token.issued') EXECUTE FUNCTION refuse_issuance ()`,
  'DROP TRIGGER refuse_issuance ON audit_events; DROP FUNCTION refuse_issuance ()')
  const refused = await ask()
  t.ok(refused.statusCode >= 500, `a server error (${refused.statusCode})`)
  t.notOk('access_token' in refused.json(), 'no token without its event')
})

t.test('an access.denied refusal inside a transaction survives the rollback', async (t) => {
  const holder = await seedAdmin(app)
  const res = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${holder.agent.agentId}`, headers: holder.headers, payload: { capabilities: ['docs:read'] } })
  // other admins exist in this file, so this is not the last holder: narrowing itself is allowed
  t.equal(res.statusCode, 200)
  const lone = await build(t)
  const only = await seedAdmin(lone)
  const refused = await lone.inject({ method: 'PATCH', url: `/api/v1/agents/${only.agent.agentId}`, headers: only.headers, payload: { status: 'suspended' } })
  t.equal(refused.statusCode, 409)
  const events = (await (lone as TestApp).pg.query('SELECT action, metadata FROM audit_events WHERE agent_id = $1', [only.agent.agentId])).rows
  t.match(events, [{ action: 'access.denied', metadata: { reason: 'last_admin', actorId: only.agent.agentId } }])
  t.equal(events.length, 1)
})

t.test('concurrent requests whose events go in one commit are each answered only once their own event is committed', async (t) => {
  const introspected = async () => (await observer.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM audit_events WHERE action = 'token.introspected' AND agent_id = $1", [admin.agent.agentId])).rows[0].n
  const before = await introspected()
  let answered = 0
  const seenAtAnswer: Array<{ answered: number, committed: number }> = []
  await Promise.all(Array.from({ length: 40 }, async () => {
    const res = await app.inject({
      method: 'POST', url: '/api/v1/token/introspect', headers: { ...admin.headers, 'content-type': 'application/x-www-form-urlencoded' }, payload: `token=${admin.token}`
    })
    t.equal(res.json().active, true)
    answered += 1
    seenAtAnswer.push({ answered, committed: await introspected() - before })
  }))
  t.ok(seenAtAnswer.every(({ answered, committed }) => committed >= answered), 'at every answer, at least as many events are committed as requests answered')
  t.equal(await introspected() - before, 40, 'one event per request, none twice')
})
