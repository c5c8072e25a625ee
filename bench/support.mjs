// What both benchmarks need: a fresh schema and the app's configuration for it.
import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { loadConfig } from '../dist/plugins/config.js'
import { migrate } from '../dist/repositories/migrations.js'
import { bundledPolicyDir } from '../dist/lib/paths.js'

export const BASE_DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'

/** A migrated schema of its own; `url` connects with it as search_path. */
export async function benchSchema () {
  const schema = `bench_${randomUUID().replace(/-/g, '').slice(0, 12)}`
  await migrate(BASE_DATABASE_URL, { schema })
  const url = new URL(BASE_DATABASE_URL)
  url.searchParams.set('options', `-c search_path=${schema}`)
  return { schema, url: url.toString() }
}

/** A production configuration (fresh RSA keys, real Redis, quiet logs) with `overrides`. */
export function benchConfig (schema, databaseUrl, overrides) {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return loadConfig({
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    DATABASE_URL: databaseUrl,
    REDIS_URL: process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379',
    JWT_PRIVATE_KEY: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    JWT_PUBLIC_KEY: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    POLICY_DIR: bundledPolicyDir,
    ...overrides
  }, { cachePrefix: `${schema}:` })
}
