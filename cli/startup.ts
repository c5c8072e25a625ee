import pg from 'pg'
import { loadConfig, loadDatabaseUrl, readEnvironment, type Config } from '../plugins/config.js'
import { pendingMigrations } from '../repositories/migrations.js'
import { ConfigError, DependencyUnavailableError, PolicyLoadError } from '../lib/errors.js'
import { CliError, ExitCode } from './exit-codes.js'

/**
 * What the commands that are not API clients share: the configuration as the server reads it,
 * failures an operator can fix said in one line (never a stack trace, never a password), and a
 * one-connection pool for a job.
 */

/** Startup failures an operator can fix get one clear line, not a stack trace. */
export function explain (error: unknown): string {
  if (error instanceof ConfigError || error instanceof PolicyLoadError || error instanceof CliError) return error.message
  if (error instanceof DependencyUnavailableError) {
    const cause = (error.cause as { code?: string } | undefined)?.code ?? 'no answer'
    const variable = error.dependency === 'redis' ? 'REDIS_URL' : error.dependency === 'vault' ? 'VAULT_ADDR' : 'DATABASE_URL'
    return `startup refused: cannot reach ${error.dependency} at ${error.location ?? 'its address'} (${cause}); check ${variable} and that it is up`
  }
  if (error === null || typeof error !== 'object') return `startup failed: ${String(error)}`
  const code = (error as { code?: string }).code
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === '28P01' || code === '3D000') {
    return `startup failed: cannot use the database (${code})`
  }
  return `startup failed: ${(error as Error).message ?? String(error)}`
}

/** Any failure as a CliError: ours as they are, the rest explained, exit code 1. */
export function asCliError (error: unknown): CliError {
  return error instanceof CliError ? error : new CliError(explain(error), ExitCode.FAILURE)
}

/** The server's whole configuration, validated as `serve` validates it. */
export function serverConfig (): Config {
  try {
    return loadConfig(readEnvironment())
  } catch (error) {
    throw asCliError(error)
  }
}

/** DATABASE_URL alone, for the commands that need nothing else (migrate, bootstrap, audit export). */
export function databaseUrlFromEnvironment (): string {
  try {
    return loadDatabaseUrl(readEnvironment())
  } catch (error) {
    throw asCliError(error)
  }
}

/** Where DATABASE_URL points, without its credentials. */
export function databaseLocation (databaseUrl: string): string {
  const url = new URL(databaseUrl)
  return `${url.hostname}:${url.port || '5432'}${url.pathname}`
}

/** A database that cannot be used, said with its location and the variable to check. */
export function databaseUnusable (databaseUrl: string, error: unknown): CliError {
  const code = (error as { code?: string } | null)?.code ?? 'no answer'
  return new CliError(`cannot use the database at ${databaseLocation(databaseUrl)} (${code}); check DATABASE_URL and that PostgreSQL is up`)
}

/** A one-connection pool for a command that is not the server. */
export async function withPool<T> (databaseUrl: string, work: (pool: pg.Pool) => Promise<T>, name = 'agentidp-cli'): Promise<T> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1, connectionTimeoutMillis: 5000, application_name: name })
  try {
    return await work(pool)
  } finally {
    await pool.end()
  }
}

/**
 * Before listening: the database must answer and its schema must be at the latest bundled
 * migration. A server on an unmigrated schema would pass a health check and then fail every
 * request; one line says what is missing and what applies it.
 */
export async function requireMigratedDatabase (databaseUrl: string): Promise<void> {
  let pending: string[]
  try {
    pending = await withPool(databaseUrl, pendingMigrations)
  } catch (error) {
    throw new CliError(`startup refused: ${databaseUnusable(databaseUrl, error).message}`)
  }
  if (pending.length > 0) {
    throw new CliError(`startup refused: the database schema is behind: ${pending.length} pending migration${pending.length === 1 ? '' : 's'} ` +
      `(${pending.join(', ')}); apply them with \`npm run db:migrate\` or \`agentidp migrate up\` (in the image: compose's migrate service, ` +
      '`node_modules/.bin/node-pg-migrate up --migrations-dir migrations --migrations-table schema_migrations`), then start again')
  }
}
