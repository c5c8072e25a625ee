import { readdirSync } from 'node:fs'
import { runner } from 'node-pg-migrate'
import pg from 'pg'
import { migrationsDir } from '../lib/paths.js'
import type { Queryable } from './transaction.js'

export const MIGRATIONS_TABLE = 'schema_migrations'

/**
 * Applies pending migrations, exactly as `npm run db:migrate` (the node-pg-migrate CLI) does.
 * node-pg-migrate holds an advisory lock for the run; `wait` makes a concurrent runner queue
 * behind it and then find nothing left to do, instead of failing.
 */
export async function migrate (databaseUrl: string, options: { schema?: string, log?: (message: string) => void, count?: number } = {}): Promise<string[]> {
  // Left alone, node-pg-migrate keeps its tracking table in "public" while the migrations create
  // their tables wherever DATABASE_URL's search_path points: keep both in the same schema.
  const migrationsSchema = options.schema === undefined ? await currentSchema(databaseUrl) : null
  const applied = await runner({
    databaseUrl,
    dir: migrationsDir,
    migrationsTable: MIGRATIONS_TABLE,
    direction: 'up',
    count: options.count ?? Infinity,
    checkOrder: true,
    singleTransaction: true,
    advisoryLockMode: 'wait',
    ...(options.schema === undefined ? {} : { schema: options.schema, createSchema: true }),
    ...(migrationsSchema === null ? {} : { migrationsSchema }),
    log: options.log ?? (() => {}),
    verbose: false
  })
  return applied.map((migration) => migration.name)
}

/**
 * Reverts the `count` most recently applied migrations (newest first), in one transaction, under
 * the same advisory lock as `migrate`. Returns their names in the order they were reverted.
 */
export async function migrateDown (databaseUrl: string, options: { count: number, log?: (message: string) => void }): Promise<string[]> {
  const migrationsSchema = await currentSchema(databaseUrl)
  const reverted = await runner({
    databaseUrl,
    dir: migrationsDir,
    migrationsTable: MIGRATIONS_TABLE,
    direction: 'down',
    count: options.count,
    checkOrder: true,
    singleTransaction: true,
    advisoryLockMode: 'wait',
    ...(migrationsSchema === null ? {} : { migrationsSchema }),
    log: options.log ?? (() => {}),
    verbose: false
  })
  return reverted.map((migration) => migration.name)
}

/** The schema unqualified CREATE TABLE statements land in (null when search_path names none that exists). */
async function currentSchema (databaseUrl: string): Promise<string | null> {
  const client = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5000 })
  await client.connect()
  try {
    return (await client.query<{ schema: string | null }>('SELECT current_schema() AS schema')).rows[0].schema
  } finally {
    await client.end()
  }
}

/** The migrations in migrations/, in order, by the name node-pg-migrate records (file name without `.sql`). */
export function bundledMigrations (): string[] {
  return readdirSync(migrationsDir).filter((file) => file.endsWith('.sql')).sort().map((file) => file.slice(0, -'.sql'.length))
}

const UNDEFINED_TABLE = '42P01'

export interface AppliedMigration { name: string, runOn: string }

/**
 * The migrations the database records as applied, in the order they ran (none when it was never
 * migrated): read where DATABASE_URL's search_path finds the tracking table.
 */
export async function appliedMigrations (db: Queryable): Promise<AppliedMigration[]> {
  try {
    const { rows } = await db.query<{ name: string, run_on: string }>(
      `SELECT name, to_char(run_on, 'YYYY-MM-DD"T"HH24:MI:SS') AS run_on FROM ${MIGRATIONS_TABLE} ORDER BY run_on, id`)
    return rows.map((row) => ({ name: row.name, runOn: row.run_on }))
  } catch (error) {
    if ((error as { code?: string }).code !== UNDEFINED_TABLE) throw error
    return []
  }
}

/**
 * The bundled migrations the database has not applied, in order (all of them when it was never
 * migrated). Reads the tracking table where DATABASE_URL's search_path finds it, as the server's
 * own queries find the product's tables.
 */
export async function pendingMigrations (db: Queryable): Promise<string[]> {
  let applied: Set<string>
  try {
    const { rows } = await db.query<{ name: string }>(`SELECT name FROM ${MIGRATIONS_TABLE}`)
    applied = new Set(rows.map((row) => row.name))
  } catch (error) {
    if ((error as { code?: string }).code !== UNDEFINED_TABLE) throw error
    applied = new Set()
  }
  return bundledMigrations().filter((name) => !applied.has(name))
}
