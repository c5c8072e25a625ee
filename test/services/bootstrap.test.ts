import t from 'tap'
import pg from 'pg'
import argon2 from 'argon2'
import { createSchema, PLATFORM_SCOPES } from '../helper.js'
import { baseEnv, compiledServer, ensureBuild, runProcess } from '../support/private-services.js'

/**
 * `node dist/server.js bootstrap --email E`, run as an operator would, against its own schema of
 * the shared PostgreSQL.
 */
await ensureBuild()
const { databaseUrl } = await createSchema(t)
const env = { ...baseEnv(), DATABASE_URL: databaseUrl }
const db = new pg.Client({ connectionString: databaseUrl })
await db.connect()
t.teardown(() => db.end())

const bootstrap = (args: string[]) => runProcess(t, process.execPath, [compiledServer, 'bootstrap', ...args], { env })

async function counts (): Promise<Record<string, number>> {
  const { rows } = await db.query(`SELECT (SELECT count(*) FROM agents)::int AS agents,
    (SELECT count(*) FROM credentials)::int AS credentials, (SELECT count(*) FROM audit_events)::int AS events`)
  return rows[0]
}

let admin: { agentId: string, clientId: string, clientSecret: string }

t.test('bootstrap prints exactly one JSON line {agentId, clientId, clientSecret} and exits 0', async (t) => {
  const result = await bootstrap(['--email', 'admin@example.com'])

  t.equal(result.code, 0, 'exits 0', { stderr: result.stderr })
  const lines = result.stdout.split('\n')
  t.equal(lines.length, 2, 'stdout is one line ending in a newline')
  t.equal(lines[1], '')
  admin = JSON.parse(lines[0])
  t.same(Object.keys(admin).sort(), ['agentId', 'clientId', 'clientSecret'])
  t.match(admin.agentId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'agentId is a UUID v4')
  t.equal(admin.clientId, admin.agentId, 'clientId is the agentId')
  t.match(admin.clientSecret, /^sk_live_[A-Za-z0-9_-]{43,}$/, 'the secret is sk_live_ + at least 256 bits of base64url')
})

t.test('the bootstrap agent is active and holds every platform scope', async (t) => {
  const { rows } = await db.query('SELECT email, status, capabilities FROM agents WHERE agent_id = $1', [admin.agentId])

  t.equal(rows.length, 1)
  t.equal(rows[0].email, 'admin@example.com')
  t.equal(rows[0].status, 'active')
  t.same([...rows[0].capabilities].sort(), [...PLATFORM_SCOPES].sort())
})

t.test('the credential row holds an argon2id hash of the secret and never the secret itself', async (t) => {
  const { rows } = await db.query('SELECT status, secret_hash, row_to_json(c)::text AS row FROM credentials c WHERE client_id = $1', [admin.agentId])

  t.equal(rows.length, 1, 'one credential')
  t.equal(rows[0].status, 'active')
  t.match(rows[0].secret_hash, /^\$argon2id\$/, 'an argon2id hash')
  t.ok(await argon2.verify(rows[0].secret_hash, admin.clientSecret), 'the hash verifies the printed secret')
  t.notOk(rows[0].row.includes(admin.clientSecret), 'the row does not contain the secret')
  const { rows: [stored] } = await db.query(`SELECT (SELECT string_agg(row_to_json(a)::text, '') FROM agents a) ||
    (SELECT string_agg(row_to_json(e)::text, '') FROM audit_events e) AS text`)
  t.notOk(stored.text.includes(admin.clientSecret), 'neither the agent nor its audit events contain the secret')
  t.notOk(stored.text.includes(admin.clientSecret.slice('sk_live_'.length)), 'not even without its prefix')
})

t.test('a second bootstrap with the same email exits non-zero, explains on stderr and creates nothing', async (t) => {
  const before = await counts()

  const result = await bootstrap(['--email', 'admin@example.com'])

  t.not(result.code, 0, 'exits non-zero')
  t.equal(result.stdout, '', 'prints nothing on stdout')
  t.match(result.stderr, /admin@example\.com already exists/)
  t.equal(result.stderr.trim().split('\n').length, 1, 'one line on stderr')
  t.same(await counts(), before, 'no agent, credential or audit event was added')
})

t.test('bootstrap without --email exits non-zero and creates nothing', async (t) => {
  const before = await counts()

  const result = await bootstrap([])

  t.not(result.code, 0, 'exits non-zero')
  t.equal(result.stdout, '', 'prints nothing on stdout')
  t.match(result.stderr, /--email/)
  t.same(await counts(), before)
})
