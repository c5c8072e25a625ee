import type { Command } from 'commander'
import type { FastifyInstance } from 'fastify'
import { loadConfig, readEnvironment } from '../../plugins/config.js'
import { migrate } from '../../repositories/migrations.js'
import { countAgents } from '../../repositories/agents.js'
import { bootstrapAdmin } from '../../services/bootstrap.js'
import { CliError } from '../exit-codes.js'
import { explain, requireMigratedDatabase, serverConfig } from '../startup.js'

/**
 * `serve` (the production server; `node dist/server.js`, `npm start`) and `dev` (the embedded
 * default of `npm run dev`). stdout carries only pino JSON lines and dev mode's bootstrap JSON
 * line; human messages go to stderr.
 */

const DEV_ADMIN_EMAIL = 'admin@agentidp.local'

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

/** Production: every required variable set, the schema migrated; then listen until a signal. */
export async function serve (): Promise<void> {
  const config = serverConfig()
  await requireMigratedDatabase(config.DATABASE_URL)
  // imported when a server starts: the app (fastify and every plugin) is most of a command's start-up time
  const { buildApp } = await import('../../app.js')
  let app: FastifyInstance
  try {
    app = await buildApp({ config })
  } catch (error) {
    throw new CliError(explain(error))
  }
  stopOnSignals(app, config.SHUTDOWN_GRACE_MS)
  await app.listen({ port: config.PORT, host: config.HOST })
}

/**
 * Dev mode's failures in one line: its own (DevModeError) as they are, anything else as `explain`
 * says, whatever was thrown (a promise rejected with nothing included).
 */
function explainDevFailure (error: unknown, DevModeError: new (...args: never[]) => Error): string {
  if (error instanceof DevModeError) return `dev: ${error.message}`
  return explain(error)
}

/** The embedded default (cli/dev.ts), migrations, the first-run admin; then listen until a signal. */
export async function dev (): Promise<void> {
  // imported only here: dev mode's embedded PostgreSQL is a devDependency, absent from the image
  const { prepareDevEnvironment, DevModeError } = await import('../dev.js')
  const { buildApp } = await import('../../app.js')
  const log = (message: string) => process.stderr.write(`[dev] ${message}\n`)
  const prepared = await prepareDevEnvironment(readEnvironment(), log).catch((error: unknown) => {
    throw new CliError(explainDevFailure(error, DevModeError))
  })
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
    throw new CliError(explainDevFailure(error, DevModeError))
  }
}

export function registerServeCommands (program: Command): void {
  program.command('serve')
    .description('run the production server: every required variable must be set (README, "Configuration"), the schema migrated')
    .addHelpText('after', '\nThe same as `node dist/server.js` and `npm start`. Logs (pino JSON) on stdout; SIGTERM/SIGINT stop it gracefully (exit 0).')
    .action(serve)
  // `node dist/server.js start`, as before `serve` existed
  program.command('start', { hidden: true }).description('the same as serve').action(serve)
  program.command('dev')
    .description('run the embedded default of `npm run dev`: embedded PostgreSQL, in-process cache, generated keys, migrations, first-run admin')
    .addHelpText('after', '\nAny variable that is set wins over its embedded default. On the first start the bootstrap admin\'s credentials are printed once as a JSON line on stdout.')
    .action(dev)
}
