import { randomUUID } from 'node:crypto'
import { readdirSync } from 'node:fs'
import t, { type Test } from 'tap'
import pg from 'pg'
import { BASE_DATABASE_URL, schemaUrl } from '../helper.js'
import { migrate, MIGRATIONS_TABLE } from '../../repositories/migrations.js'
import { migrationsDir } from '../../lib/paths.js'
import { baseEnv, runProcess } from '../support/private-services.js'

/** node-pg-migrate records each file under its name without the extension. */
const MIGRATIONS = readdirSync(migrationsDir).filter((file) => file.endsWith('.sql')).map((file) => file.slice(0, -4)).sort()
const API_TABLES = ['agents', 'audit_events', 'credentials', MIGRATIONS_TABLE, 'token_monthly_counts']

const db = new pg.Pool({ connectionString: BASE_DATABASE_URL, max: 2 })
t.teardown(() => db.end())

/** A schema name of our own, dropped when the test ends; `create` makes it exist (empty) first. */
async function freshSchema (t: Test, create = false): Promise<string> {
  const schema = `m_${randomUUID().replace(/-/g, '').slice(0, 16)}`
  t.teardown(() => db.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`))
  if (create) await db.query(`CREATE SCHEMA ${schema}`)
  return schema
}

/** A database of our own (its public schema is what a plain DATABASE_URL migrates), dropped when the test ends. */
async function freshDatabase (t: Test): Promise<{ url: string, client: pg.Client }> {
  const name = `m_${randomUUID().replace(/-/g, '').slice(0, 16)}`
  await db.query(`CREATE DATABASE ${name}`)
  t.teardown(() => db.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
  const url = new URL(BASE_DATABASE_URL)
  url.pathname = `/${name}`
  const client = new pg.Client({ connectionString: url.toString() })
  await client.connect()
  t.teardown(() => client.end())
  return { url: url.toString(), client }
}

async function tablesOf (schema: string, client: pg.ClientBase | pg.Pool = db): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    'SELECT table_name AS name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1', [schema])
  return rows.map((row) => row.name)
}

async function recorded (schema: string, client: pg.ClientBase | pg.Pool = db): Promise<Array<{ id: number, name: string, run_on: Date }>> {
  const { rows } = await client.query(`SELECT id, name, run_on FROM ${schema}.${MIGRATIONS_TABLE} ORDER BY id`)
  return rows
}

t.test('migrating a fresh schema creates the tables of API.md and records every migration once', async (t) => {
  const schema = await freshSchema(t)

  const applied = await migrate(BASE_DATABASE_URL, { schema })

  t.same(applied, MIGRATIONS, 'every migration file is applied, in order')
  const tables = await tablesOf(schema)
  for (const table of API_TABLES) t.ok(tables.includes(table), `${schema}.${table} exists`)
  t.same((await recorded(schema)).map((row) => row.name), MIGRATIONS, 'each migration is recorded exactly once')
})

t.test('a second run on an up-to-date schema applies nothing and records nothing', async (t) => {
  const schema = await freshSchema(t)
  await migrate(BASE_DATABASE_URL, { schema })
  const before = await recorded(schema)

  const applied = await migrate(BASE_DATABASE_URL, { schema })

  t.same(applied, [], 'nothing is applied')
  t.same(await recorded(schema), before, 'the tracking table is unchanged')
})

t.test('two concurrent runs on a fresh schema both succeed and apply each migration once', async (t) => {
  // the shape of two replicas migrating at once: the same DATABASE_URL, its search_path naming the schema
  const schema = await freshSchema(t, true)
  const url = schemaUrl(schema)

  const [first, second] = await Promise.all([migrate(url), migrate(url)])

  t.same([...first, ...second].sort(), MIGRATIONS, 'between them, each migration is applied once')
  t.ok(first.length === 0 || second.length === 0, 'the runner that waited for the lock found nothing left to do')
  t.same((await recorded(schema)).map((row) => row.name), MIGRATIONS, 'each migration is recorded once')
  const tables = await tablesOf(schema)
  for (const table of API_TABLES) t.ok(tables.includes(table), `${schema}.${table} exists`)
})

t.test('`npm run db:migrate` migrates the database DATABASE_URL names and is a no-op once it is up to date', async (t) => {
  // the node-pg-migrate CLI tracks migrations in public.schema_migrations whatever search_path the URL sets,
  // so it gets a database of its own rather than a schema of the shared one
  const { url, client } = await freshDatabase(t)
  const env = { ...baseEnv(), DATABASE_URL: url }

  const first = await runProcess(t, 'npm', ['run', 'db:migrate'], { env })
  t.equal(first.code, 0, 'the first run exits 0', { stderr: first.stderr })
  const tables = await tablesOf('public', client)
  for (const table of API_TABLES) t.ok(tables.includes(table), `public.${table} exists`)
  const before = await recorded('public', client)
  t.same(before.map((row) => row.name), MIGRATIONS, 'each migration is recorded once')

  const second = await runProcess(t, 'npm', ['run', 'db:migrate'], { env })

  t.equal(second.code, 0, 'the second run exits 0', { stderr: second.stderr })
  t.match(second.stdout + second.stderr, /No migrations to run/, 'the second run says there is nothing to do')
  t.same(await recorded('public', client), before, 'nothing was applied or recorded again')
})
