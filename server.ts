import { parseArgs } from 'node:util'
import pg from 'pg'
import type { FastifyInstance } from 'fastify'
import { buildApp } from './app.js'
import { ConfigError, loadConfig, loadDatabaseUrl, readEnvironment } from './plugins/config.js'
import { PolicyLoadError } from './plugins/policy.js'
import { ProblemError } from './plugins/errors.js'
import { migrate } from './lib/migrations.js'
import { bootstrapAdmin } from './cli/bootstrap.js'
import { auditPrune } from './cli/audit-prune.js'
import { countAgents } from './routes/agents/repository.js'

/**
 * Process entry. Commands:
 *   start (default)           production server: every required variable must be set
 *   dev                       the embedded default (see cli/dev.ts), migrations, first-run admin
 *   bootstrap --email E       creates an admin agent; prints {"agentId","clientId","clientSecret"}
 *   audit-prune               deletes audit events older than AUDIT_RETENTION_DAYS; prints {"deleted","retentionDays"}
 * stdout carries only pino JSON lines and the bootstrap JSON line; human messages go to stderr.
 */

const SHUTDOWN_GRACE_MS = 10_000
const DEV_ADMIN_EMAIL = 'admin@agentidp.local'

function fail (message: string): never {
  process.stderr.write(`${message}\n`)
  process.exit(1)
}

/** Startup failures a operator can fix get one clear line, not a stack trace. */
function explain (error: unknown): string {
  if (error instanceof ConfigError || error instanceof PolicyLoadError) return error.message
  const code = (error as { code?: string }).code
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === '28P01' || code === '3D000') {
    return `startup failed: cannot use the database (${code})`
  }
  return `startup failed: ${(error as Error).message ?? String(error)}`
}

function stopOnSignals (app: FastifyInstance, after: () => Promise<void> = async () => {}): void {
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    app.log.info({ signal }, 'shutting down')
    const force = setTimeout(() => process.exit(1), SHUTDOWN_GRACE_MS)
    force.unref()
    app.close().then(after).then(() => process.exit(0), () => process.exit(1))
  }
  process.once('SIGTERM', () => stop('SIGTERM'))
  process.once('SIGINT', () => stop('SIGINT'))
}

async function start (): Promise<void> {
  let config
  try {
    config = loadConfig(readEnvironment())
  } catch (error) {
    fail(explain(error))
  }
  const app = await buildApp({ config }).catch((error: unknown) => fail(explain(error)))
  stopOnSignals(app)
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
      const admin = await withClient(config.DATABASE_URL, (client) => bootstrapAdmin(client, DEV_ADMIN_EMAIL))
      // the one time a secret is printed: the first start's bootstrap admin
      process.stdout.write(JSON.stringify(admin) + '\n')
      log(`bootstrap admin ${DEV_ADMIN_EMAIL} created; its credentials are the JSON line above (shown once)`)
    }
    stopOnSignals(app, prepared.stop)
    await app.listen({ port: config.PORT, host: config.HOST })
    log(`AgentIdP listening on ${config.ISSUER_URL} (docs: ${config.ISSUER_URL}/docs)`)
  } catch (error) {
    await prepared.stop()
    fail(explainDevFailure(error, DevModeError))
  }
}

async function withClient<T> (databaseUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5000 })
  await client.connect()
  try {
    return await work(client)
  } finally {
    await client.end()
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
  try {
    databaseUrl = loadDatabaseUrl(readEnvironment())
  } catch (error) {
    fail(explain(error))
  }
  try {
    const admin = await withClient(databaseUrl, (client) => bootstrapAdmin(client, email))
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
