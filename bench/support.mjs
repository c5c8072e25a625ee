// What the benchmarks need: a fresh schema and the app's configuration for it.
import { randomUUID } from 'node:crypto'
import { loadConfig } from '../dist/plugins/config.js'
import { migrate } from '../dist/repositories/migrations.js'
import { bundledPolicyDir } from '../dist/lib/paths.js'
import { keyPairFor } from './lib/jws.mjs'

export const BASE_DATABASE_URL = process.env.BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
export const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379'

/** The URL that connects to `schema` (as search_path) of the bench database. */
export function schemaUrl (schema) {
  const url = new URL(BASE_DATABASE_URL)
  url.searchParams.set('options', `-c search_path=${schema}`)
  return url.toString()
}

/** A migrated schema of its own; `url` connects with it as search_path. */
export async function benchSchema () {
  const schema = `bench_${randomUUID().replace(/-/g, '').slice(0, 12)}`
  await migrate(BASE_DATABASE_URL, { schema })
  return { schema, url: schemaUrl(schema) }
}

/**
 * A production configuration (fresh signing keys of `alg`, real Redis, the default log level:
 * info) with `overrides`. JWT_ALG is passed through: a loadConfig that does not know it ignores it
 * (and then rejects a non-RSA key, or signs RS256 anyway — the runner checks the issued header).
 */
export function benchConfig (schema, databaseUrl, overrides, { alg = 'RS256' } = {}) {
  const { privateKey, publicKey } = keyPairFor(alg)
  return loadConfig({
    NODE_ENV: 'production',
    DATABASE_URL: databaseUrl,
    REDIS_URL,
    JWT_ALG: alg,
    JWT_PRIVATE_KEY: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    JWT_PUBLIC_KEY: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    POLICY_DIR: bundledPolicyDir,
    ...overrides
  }, { cachePrefix: `${schema}:` })
}
