import { parseArgs } from 'node:util'
import pg from 'pg'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { loadConfig, loadDatabaseUrl, readEnvironment } from './plugins/config.js'
import { auditPrune } from './cli/audit-prune.js'
import { migrate, pendingMigrations } from './repositories/migrations.js'
import { countAgents } from './repositories/agents.js'
import { bootstrapAdmin } from './services/bootstrap.js'
import { loadPolicyData } from './services/policy.js'
import { ConfigError, DependencyUnavailableError, PolicyLoadError, ProblemError } from './lib/errors.js'
import { bundledPolicyDir } from './lib/paths.js'

/**
 * Process entry. Commands:
 *   start (default)           production server: every required variable must be set
 *   dev                       the embedded default (see cli/dev.ts), migrations, first-run admin
 *   bootstrap --email E       creates an admin agent; prints {"agentId","clientId","clientSecret"}
 *   audit-prune               deletes audit events older than AUDIT_RETENTION_DAYS; prints {"deleted","retentionDays"}
 * stdout carries only pino JSON lines and the bootstrap JSON line; human messages go to stderr.
 */

const DEV_ADMIN_EMAIL = 'admin@agentidp.local'

function fail (message: string): never {
  process.stderr.write(`${message}\n`)
  process.exit(1)
}

/** Startup failures a operator can fix get one clear line, not a stack trace. */
function explain (error: unknown): string {
  if (error instanceof ConfigError || error instanceof PolicyLoadError) return error.message
  if (error instanceof DependencyUnavailableError) {
    const cause = (error.cause as { code?: string } | undefined)?.code ?? 'no answer'
    const variable = error.dependency === 'redis' ? 'REDIS_URL' : error.dependency === 'vault' ? 'VAULT_ADDR' : 'DATABASE_URL'
    return `startup refused: cannot reach ${error.dependency} at ${error.location ?? 'its address'} (${cause}); check ${variable} and that it is up`
  }
  const code = (error as { code?: string }).code
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === '28P01' || code === '3D000') {
    return `startup failed: cannot use the database (${code})`
  }
  return `startup failed: ${(error as Error).message ?? String(error)}`
}

/**
 * SIGTERM/SIGINT: stop accepting connections, let requests in progress finish (keep-alive
 * connections that are idle are closed at once; a request on one already accepted is still
 * served), close the pools, exit 0. Connections still busy after most of the grace period are
 * stalled clients: they are cut so the exit stays within SHUTDOWN_GRACE_MS. A failure to close is
 * said on stderr with its reason, and the exit code is then 1 — never a silent one.
 */
function stopOnSignals (app: FastifyInstance, graceMs: number, after: () => Promise<void> = async () => {}): void {
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    app.log.info({ signal, graceMs }, 'shutting down')
    const stalled = setTimeout(() => { app.server.closeAllConnections() }, Math.floor(graceMs * 0.6))
    const force = setTimeout(() => {
      process.stderr.write(`shutdown did not finish within ${graceMs} ms; exiting\n`)
      process.exit(1)
    }, graceMs)
    stalled.unref()
    force.unref()
    app.close().then(after).then(() => process.exit(0), (error: unknown) => {
      process.stderr.write(`shutdown failed: ${(error as Error)?.message ?? String(error)}\n`)
      process.exit(1)
    })
  }
  process.once('SIGTERM', () => stop('SIGTERM'))
  process.once('SIGINT', () => stop('SIGINT'))
}

/** Where DATABASE_URL points, without its credentials. */
function databaseLocation (databaseUrl: string): string {
  const url = new URL(databaseUrl)
  return `${url.hostname}:${url.port || '5432'}${url.pathname}`
}

/**
 * Before listening: the database must answer and its schema must be at the latest bundled
 * migration. A server on an unmigrated schema would pass a health check and then fail every
 * request; one line says what is missing and what applies it.
 */
async function requireMigratedDatabase (databaseUrl: string): Promise<void> {
  let pending: string[]
  try {
    pending = await withPool(databaseUrl, pendingMigrations)
  } catch (error) {
    const code = (error as { code?: string }).code ?? 'no answer'
    fail(`startup refused: cannot use the database at ${databaseLocation(databaseUrl)} (${code}); check DATABASE_URL and that PostgreSQL is up`)
  }
  if (pending.length > 0) {
    fail(`startup refused: the database schema is behind: ${pending.length} pending migration${pending.length === 1 ? '' : 's'} ` +
      `(${pending.join(', ')}); apply them with \`npm run db:migrate\` (in the image: compose's migrate service, ` +
      '`node_modules/.bin/node-pg-migrate up --migrations-dir migrations --migrations-table schema_migrations`), then start again')
  }
}

async function start (): Promise<void> {
  let config
  try {
    config = loadConfig(readEnvironment())
  } catch (error) {
    fail(explain(error))
  }
  await requireMigratedDatabase(config.DATABASE_URL)
  const app = await buildApp({ config }).catch((error: unknown) => fail(explain(error)))
  stopOnSignals(app, config.SHUTDOWN_GRACE_MS)
  await app.listen({ port: config.PORT, host: config.HOST })
}

/**
 * Dev mode's failures in one line: its own (DevModeError) as they are, anything else as `explain`
 * says, whatever was thrown (a promise rejected with nothing included).
 */
function explainDevFailure (error: unknown, DevModeError: new (...args: never[]) => Error): string {
  if (error instanceof DevModeError) return `dev: ${error.message}`
  if (error === null || typeof error !== 'object') return `startup failed: ${String(error)}`
  return explain(error)
}

async function dev (): Promise<void> {
  const { prepareDevEnvironment, DevModeError } = await import('./cli/dev.js')
  const log = (message: string) => process.stderr.write(`[dev] ${message}\n`)
  const prepared = await prepareDevEnvironment(readEnvironment(), log)
    .catch((error: unknown) => fail(explainDevFailure(error, DevModeError)))
  try {
    const config = loadConfig(prepared.env, { embedded: true })
    await migrate(config.DATABASE_URL)
    const app = await buildApp({ config })
    if (await countAgents(app.pg) === 0) {
      const admin = await bootstrapAdmin(app.pg.pool, DEV_ADMIN_EMAIL, app.policy.platformScopes)
      // the one time a secret is printed: the first start's bootstrap admin
      process.stdout.write(JSON.stringify(admin) + '\n')
      log(`bootstrap admin ${DEV_ADMIN_EMAIL} created; its credentials are the JSON line above (shown once)`)
    }
    stopOnSignals(app, config.SHUTDOWN_GRACE_MS, prepared.stop)
    await app.listen({ port: config.PORT, host: config.HOST })
    log(`AgentIdP listening on ${config.ISSUER_URL} (docs: ${config.ISSUER_URL}/docs)`)
  } catch (error) {
    await prepared.stop()
    fail(explainDevFailure(error, DevModeError))
  }
}

/** A one-connection pool for a command that is not the server. */
async function withPool<T> (databaseUrl: string, work: (pool: pg.Pool) => Promise<T>): Promise<T> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1, connectionTimeoutMillis: 5000, application_name: 'agentidp-cli' })
  try {
    return await work(pool)
  } finally {
    await pool.end()
  }
}

async function bootstrap (args: string[]): Promise<void> {
  let email: string | undefined
  try {
    email = parseArgs({ args, options: { email: { type: 'string' } }, strict: true }).values.email
  } catch (error) {
    fail(`bootstrap: ${(error as Error).message}`)
  }
  if (email === undefined || !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(email) || email.length > 254) {
    fail('bootstrap: --email <address> is required and must be an email address')
  }
  let databaseUrl: string
  let platformScopes: string[]
  try {
    const env = readEnvironment()
    databaseUrl = loadDatabaseUrl(env)
    // the platform scopes are the policy data's: the same POLICY_DIR as the server's
    platformScopes = (await loadPolicyData(env.POLICY_DIR === undefined || env.POLICY_DIR === '' ? bundledPolicyDir : env.POLICY_DIR)).platformScopes
  } catch (error) {
    fail(explain(error))
  }
  try {
    const admin = await withPool(databaseUrl, (pool) => bootstrapAdmin(pool, email, platformScopes))
    process.stdout.write(JSON.stringify(admin) + '\n')
  } catch (error) {
    if (error instanceof ProblemError && error.code === 'AGENT_ALREADY_EXISTS') {
      fail(`bootstrap: an agent with email ${email} already exists; nothing was created`)
    }
    fail(explain(error))
  }
}

/** For cron: the same environment as the server (validated the same way), one JSON line on stdout. */
async function prune (): Promise<void> {
  let config
  try {
    config = loadConfig(readEnvironment())
  } catch (error) {
    fail(explain(error))
  }
  process.stdout.write(JSON.stringify(await auditPrune(config.DATABASE_URL, config.AUDIT_RETENTION_DAYS)) + '\n')
}

const [command = 'start', ...rest] = process.argv.slice(2)
const commands: Record<string, () => Promise<void>> = {
  start,
  dev,
  bootstrap: () => bootstrap(rest),
  'audit-prune': prune
}
const run = commands[command]
if (run === undefined) fail(`unknown command "${command}"; use one of: ${Object.keys(commands).join(', ')}`)
run().catch((error: unknown) => fail(explain(error)))
