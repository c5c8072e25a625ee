// AgentIdP from dist/, on its own PostgreSQL schema, the real Redis, limits off, with a bootstrap
// client whose secret is argon2id-hashed as in production. Prints one JSON line once it listens.
import pg from 'pg'
import { buildApp } from '../../dist/app.js'
import { bootstrapAdmin } from '../../dist/services/bootstrap.js'
import { BASE_DATABASE_URL as base, benchConfig, benchSchema } from '../support.mjs'

const port = Number(process.argv[2])
const { schema, url } = await benchSchema()
const config = benchConfig(schema, url, {
  ISSUER_URL: `http://127.0.0.1:${port}`,
  RATE_LIMIT_TOKEN_PER_CLIENT: '0',
  RATE_LIMIT_AUTH_FAILURES_PER_IP: '0',
  TOKEN_MONTHLY_QUOTA: '0'
})

const app = await buildApp({ config })
const admin = await bootstrapAdmin(app.pg.pool, `bench-${schema}@example.com`, app.policy.platformScopes)
await app.listen({ port, host: '127.0.0.1' })

async function shutdown () {
  await app.close()
  const cleanup = new pg.Client({ connectionString: base })
  await cleanup.connect()
  await cleanup.query(`DROP SCHEMA ${schema} CASCADE`)
  await cleanup.end()
  process.exit(0)
}
process.once('SIGTERM', shutdown)
process.once('SIGINT', shutdown)
process.stdout.write(JSON.stringify({ ready: true, tokenPath: '/api/v1/token', client_id: admin.clientId, client_secret: admin.clientSecret }) + '\n')
