import { runner } from 'node-pg-migrate'
import { migrationsDir } from './paths.js'

export const MIGRATIONS_TABLE = 'schema_migrations'

/**
 * Applies pending migrations, exactly as `npm run db:migrate` (the node-pg-migrate CLI) does.
 * node-pg-migrate holds an advisory lock for the run; `wait` makes a concurrent runner queue
 * behind it and then find nothing left to do, instead of failing.
 */
export async function migrate (databaseUrl: string, options: { schema?: string, log?: (message: string) => void } = {}): Promise<string[]> {
  const applied = await runner({
    databaseUrl,
    dir: migrationsDir,
    migrationsTable: MIGRATIONS_TABLE,
    direction: 'up',
    count: Infinity,
    checkOrder: true,
    singleTransaction: true,
    advisoryLockMode: 'wait',
    ...(options.schema === undefined ? {} : { schema: options.schema, createSchema: true }),
    log: options.log ?? (() => {}),
    verbose: false
  })
  return applied.map((migration) => migration.name)
}
