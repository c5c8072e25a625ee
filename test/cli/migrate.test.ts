import { randomUUID } from 'node:crypto'
import t from 'tap'
import pg from 'pg'
import { BASE_DATABASE_URL, schemaUrl } from '../helper.js'
import { bundledMigrations } from '../../repositories/migrations.js'
import { ensureBuild, sparePort } from '../support/private-services.js'
import { agentidp, json } from '../support/cli.js'

/**
 * `agentidp migrate up|down|status` on schemas of their own (DATABASE_URL's search_path): a fresh
 * database, a partial one, a current one; a progress line per migration on stderr; the exit codes.
 */
// some thirty command processes, each a node start-up: on a busy 2-core machine far beyond .taprc's 120 s
t.setTimeout(300_000)
await ensureBuild()
const admin = new pg.Client({ connectionString: BASE_DATABASE_URL })
await admin.connect()
t.teardown(() => admin.end())

/** An empty schema, dropped at the end: a database never migrated. */
async function emptySchema (): Promise<string> {
  const schema = `cli_${randomUUID().replace(/-/g, '').slice(0, 16)}`
  await admin.query(`CREATE SCHEMA ${schema}`)
  t.teardown(() => admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
  return schema
}

const all = bundledMigrations()
interface Status { current: boolean, applied: string[], pending: string[], unknown: string[], migrations: Array<{ name: string, status: string, runOn: string | null }> }

t.test('migrate status on a fresh, a partial and a current database', async (t) => {
  const schema = await emptySchema()
  const env = { DATABASE_URL: schemaUrl(schema) }

  const fresh = await agentidp(t, ['migrate', 'status'], { env })
  t.equal(fresh.code, 0, 'a fresh database: exit 0', { stderr: fresh.stderr })
  const freshStatus = json<Status>(fresh)
  t.same(freshStatus.applied, [], 'nothing applied')
  t.same(freshStatus.pending, all, 'every bundled migration pending')
  t.equal(freshStatus.current, false)
  t.match(fresh.stderr, new RegExp(`${all.length} pending of ${all.length}`))
  t.equal((await agentidp(t, ['migrate', 'status', '--check'], { env })).code, 6, '--check: exit 6 while migrations are pending')

  const partial = await agentidp(t, ['migrate', 'up', '--count', '3'], { env })
  t.equal(partial.code, 0, { stderr: partial.stderr })
  t.same(json(partial), { applied: all.slice(0, 3) })
  t.same(partial.stderr.split('\n').filter((line) => line.startsWith('migrate: applying')), all.slice(0, 3).map((name) => `migrate: applying ${name}`),
    'a progress line per migration on stderr')

  const partialStatus = json<Status>(await agentidp(t, ['migrate', 'status'], { env }))
  t.same(partialStatus.applied, all.slice(0, 3), 'a partial database: the first three applied')
  t.same(partialStatus.pending, all.slice(3), 'the rest pending')
  t.ok(partialStatus.migrations.slice(0, 3).every((migration) => migration.status === 'applied' && typeof migration.runOn === 'string'), 'applied ones say when')
  t.ok(partialStatus.migrations.slice(3).every((migration) => migration.status === 'pending' && migration.runOn === null))

  const rest = await agentidp(t, ['migrate', 'up'], { env })
  t.equal(rest.code, 0)
  t.same(json(rest), { applied: all.slice(3) })
  t.equal(rest.stderr.split('\n').filter((line) => line.startsWith('migrate: applying')).length, all.length - 3)

  const current = await agentidp(t, ['migrate', 'status', '--check'], { env })
  t.equal(current.code, 0, 'a current database: --check exits 0')
  const currentStatus = json<Status>(current)
  t.same(currentStatus.applied, all)
  t.same(currentStatus.pending, [])
  t.equal(currentStatus.current, true)
  t.match(current.stderr, /the schema is current/)

  const again = await agentidp(t, ['migrate', 'up'], { env })
  t.same(json(again), { applied: [] }, 'up on a current database applies nothing')
  t.match(again.stderr, /nothing to apply/)

  const table = await agentidp(t, ['migrate', 'status', '--output', 'table'], { env })
  t.match(table.stdout, /^migration\s+status\s+runOn\n/, 'a table with a header')
  t.equal(table.stdout.trim().split('\n').length, all.length + 1, 'a row per migration')
})

t.test('migrate down reverts the newest migrations, and status shows them pending again', async (t) => {
  const schema = await emptySchema()
  const env = { DATABASE_URL: schemaUrl(schema) }
  t.equal((await agentidp(t, ['migrate', 'up'], { env })).code, 0)

  const down = await agentidp(t, ['migrate', 'down', '--count', '3'], { env })
  t.equal(down.code, 0, { stderr: down.stderr })
  t.same(json(down), { reverted: all.slice(-3).reverse() }, 'newest first')
  t.match(down.stderr, new RegExp(`migrate: reverting ${all.at(-1)}`))
  t.same(json<Status>(await agentidp(t, ['migrate', 'status'], { env })).pending, all.slice(-3))
  // 012 added agents.dpop_bound, 013 agents.client_id_url (014 swapped an index)
  const { rows } = await admin.query('SELECT count(*)::int AS n FROM information_schema.columns WHERE table_schema = $1 AND column_name = ANY ($2)', [schema, ['dpop_bound', 'client_id_url']])
  t.equal(rows[0].n, 0, 'the reverted migrations\' columns are gone')

  t.equal((await agentidp(t, ['migrate', 'up'], { env })).code, 0, 'and up applies them again')
  t.equal(json<Status>(await agentidp(t, ['migrate', 'status'], { env })).current, true)
})

t.test('a migration the build does not bundle is reported as unknown', async (t) => {
  const schema = await emptySchema()
  const env = { DATABASE_URL: schemaUrl(schema) }
  t.equal((await agentidp(t, ['migrate', 'up'], { env })).code, 0)
  await admin.query(`INSERT INTO ${schema}.schema_migrations (name, run_on) VALUES ('999_from_the_future', now())`)
  const result = await agentidp(t, ['migrate', 'status'], { env })
  t.equal(result.code, 0)
  t.same(json<Status>(result).unknown, ['999_from_the_future'])
  t.match(result.stderr, /newer than this code/)
})

t.test('failures: no DATABASE_URL, an unreachable database — exit 1, one line, no password', async (t) => {
  const missing = await agentidp(t, ['migrate', 'status'], { env: { DATABASE_URL: undefined }, cwd: '/' })
  t.equal(missing.code, 1)
  t.match(missing.stderr.trim(), /^configuration error: DATABASE_URL is required/)
  t.equal(missing.stdout, '')

  const closed = await sparePort()
  for (const command of [['migrate', 'status'], ['migrate', 'up'], ['migrate', 'down']]) {
    const result = await agentidp(t, command, { env: { DATABASE_URL: `postgres://agentidp:s3cret-pw@127.0.0.1:${closed}/agentidp` } })
    t.equal(result.code, 1, `${command.join(' ')}: exit 1`)
    t.equal(result.stderr.trim().split('\n').length, 1, 'one line', { stderr: result.stderr })
    t.match(result.stderr, new RegExp(`cannot use the database at 127\\.0\\.0\\.1:${closed}/agentidp \\(ECONNREFUSED\\)`))
    t.notOk(result.stderr.includes('s3cret-pw'), 'the password is not printed')
  }
})
