// AgentIdP from dist/, on its own PostgreSQL schema, the real Redis, limits off, with a bootstrap
// client whose secret is argon2id-hashed as in production. Prints one JSON line once it listens.
import { generateKeyPairSync, randomUUID } from 'node:crypto'
import pg from 'pg'
import { buildApp } from '../../dist/app.js'
import { loadConfig } from '../../dist/plugins/config.js'
import { migrate } from '../../dist/lib/migrations.js'
import { bootstrapAdmin } from '../../dist/cli/bootstrap.js'
import { bundledPolicyDir } from '../../dist/lib/paths.js'

const port = Number(process.argv[2])
const base = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const schema = `bench_${randomUUID().replace(/-/g, '').slice(0, 12)}`
await migrate(base, { schema })
const url = new URL(base)
url.searchParams.set('options', `-c search_path=${schema}`)

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const config = loadConfig({
  NODE_ENV: 'production',
  LOG_LEVEL: 'warn',
  DATABASE_URL: url.toString(),
  REDIS_URL: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
  JWT_PRIVATE_KEY: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  JWT_PUBLIC_KEY: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  ISSUER_URL: `http://127.0.0.1:${port}`,
  POLICY_DIR: bundledPolicyDir,
  RATE_LIMIT_TOKEN_PER_CLIENT: '0',
  RATE_LIMIT_AUTH_FAILURES_PER_IP: '0',
  TOKEN_MONTHLY_QUOTA: '0'
}, { cachePrefix: `${schema}:` })

const client = new pg.Client({ connectionString: config.DATABASE_URL })
await client.connect()
const admin = await bootstrapAdmin(client, `bench-${schema}@example.com`)
await client.end()

const app = await buildApp({ config })
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
