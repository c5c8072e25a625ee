import t from 'tap'
import pg from 'pg'
import { build, createSchema, schemaUrl, BASE_DATABASE_URL } from '../helper.js'
import { bundledMigrations } from '../../repositories/migrations.js'

/**
 * Liveness and readiness with everything up, and readiness on a schema the deployment has not
 * migrated yet (outages: test/routes/health-outage.test.ts).
 */
t.test('with everything up and migrated, live, ready and /health are all 200', async (t) => {
  const app = await build(t)
  const live = await app.inject({ method: 'GET', url: '/health/live' })
  const ready = await app.inject({ method: 'GET', url: '/health/ready' })
  const health = await app.inject({ method: 'GET', url: '/health' })

  t.equal(live.statusCode, 200)
  t.same(live.json(), { status: 'ok' })
  t.equal(ready.statusCode, 200)
  t.same(ready.json(), { status: 'ok', postgres: 'connected', redis: 'connected', migrations: 'current' })
  t.same(health.json(), { status: 'ok', postgres: 'connected', redis: 'connected' }, '/health keeps the runbook shape: no migrations field')
  t.equal(ready.headers['cache-control'], 'no-store')
})

t.test('a schema missing the newest migration is live but not ready: 503 with migrations "pending"', async (t) => {
  const { schema } = await createSchema(t)
  const newest = bundledMigrations().at(-1) as string
  // the state of a deployment whose new image runs before its migration job
  const db = new pg.Client({ connectionString: BASE_DATABASE_URL })
  await db.connect()
  await db.query(`DELETE FROM ${schema}.schema_migrations WHERE name = $1`, [newest])
  await db.end()
  const app = await build(t, { databaseUrl: schemaUrl(schema) })

  const ready = await app.inject({ method: 'GET', url: '/health/ready' })
  t.equal(ready.statusCode, 503)
  t.same(ready.json(), { status: 'degraded', postgres: 'connected', redis: 'connected', migrations: 'pending' })
  t.equal((await app.inject({ method: 'GET', url: '/health/live' })).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200, '/health checks connectivity only, as the runbook says')
})

t.test('a schema that was never migrated is not ready', async (t) => {
  const { schema } = await createSchema(t)
  const db = new pg.Client({ connectionString: BASE_DATABASE_URL })
  await db.connect()
  await db.query(`DROP TABLE ${schema}.schema_migrations`)
  await db.end()
  const app = await build(t, { databaseUrl: schemaUrl(schema) })

  const ready = await app.inject({ method: 'GET', url: '/health/ready' })
  t.equal(ready.statusCode, 503)
  t.match(ready.json(), { migrations: 'pending' })
})
