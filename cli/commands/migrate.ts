import { Option, type Command } from 'commander'
import { appliedMigrations, bundledMigrations, migrate, migrateDown } from '../../repositories/migrations.js'
import { CliError, ExitCode } from '../exit-codes.js'
import { note, outputOption, print, resolveFormat } from '../output.js'
import { databaseUnusable, databaseUrlFromEnvironment, withPool } from '../startup.js'
import { positiveInteger } from '../arguments.js'

/**
 * `migrate up|down|status`: node-pg-migrate over the bundled migrations/ (the same runner as
 * `npm run db:migrate` and dev mode), on DATABASE_URL, tracked in schema_migrations where its
 * search_path points. A line per migration on stderr; stdout says what was done.
 */

/** node-pg-migrate announces each migration as it builds it: one progress line each. */
function progress (verb: string): (message: string) => void {
  return (message) => {
    const match = /^### MIGRATION (\S+) \((UP|DOWN)\) ###$/.exec(message)
    if (match !== null) note(`migrate: ${verb} ${match[1]}`)
  }
}

async function runMigration (work: (databaseUrl: string) => Promise<string[]>): Promise<string[]> {
  const databaseUrl = databaseUrlFromEnvironment()
  try {
    return await work(databaseUrl)
  } catch (error) {
    const code = (error as { code?: string }).code
    if (code !== undefined && /^(E[A-Z]+|28P01|3D000|57P03)$/.test(code)) throw databaseUnusable(databaseUrl, error)
    throw new CliError(`migrate: ${(error as Error).message ?? String(error)}`)
  }
}

export async function migrateUp (options: { count?: number, output?: string }): Promise<void> {
  const applied = await runMigration((databaseUrl) => migrate(databaseUrl, { count: options.count, log: progress('applying') }))
  note(applied.length === 0 ? 'migrate: nothing to apply; the schema is current' : `migrate: ${applied.length} applied`)
  const format = resolveFormat(options.output)
  print(format, { applied }, { rows: applied.map((name) => ({ migration: name, status: 'applied' })), columns: ['migration', 'status'] })
}

export async function migrateDownCommand (options: { count: number, output?: string }): Promise<void> {
  const reverted = await runMigration((databaseUrl) => migrateDown(databaseUrl, { count: options.count, log: progress('reverting') }))
  note(reverted.length === 0 ? 'migrate: nothing to revert' : `migrate: ${reverted.length} reverted`)
  const format = resolveFormat(options.output)
  print(format, { reverted }, { rows: reverted.map((name) => ({ migration: name, status: 'reverted' })), columns: ['migration', 'status'] })
}

interface MigrationStatus { name: string, status: 'applied' | 'pending' | 'unknown', runOn: string | null }

/** Every bundled migration, applied or pending, plus any the database applied that this build does not bundle. */
export async function migrationStatus (databaseUrl: string): Promise<MigrationStatus[]> {
  const applied = await withPool(databaseUrl, appliedMigrations).catch((error: unknown) => { throw databaseUnusable(databaseUrl, error) })
  const ranOn = new Map(applied.map((migration) => [migration.name, migration.runOn]))
  const bundled = bundledMigrations()
  const known = bundled.map((name): MigrationStatus => ({ name, status: ranOn.has(name) ? 'applied' : 'pending', runOn: ranOn.get(name) ?? null }))
  const unknown = applied.filter((migration) => !bundled.includes(migration.name))
    .map((migration): MigrationStatus => ({ name: migration.name, status: 'unknown', runOn: migration.runOn }))
  return [...known, ...unknown]
}

export async function migrateStatus (options: { check?: boolean, output?: string }): Promise<void> {
  const migrations = await migrationStatus(databaseUrlFromEnvironment())
  const pending = migrations.filter((migration) => migration.status === 'pending').map((migration) => migration.name)
  const applied = migrations.filter((migration) => migration.status === 'applied').map((migration) => migration.name)
  const unknown = migrations.filter((migration) => migration.status === 'unknown').map((migration) => migration.name)
  const format = resolveFormat(options.output)
  print(format, { current: pending.length === 0, applied, pending, unknown, migrations },
    { rows: migrations.map((migration) => ({ migration: migration.name, status: migration.status, runOn: migration.runOn })), columns: ['migration', 'status', 'runOn'] })
  note(pending.length === 0
    ? `migrate: the schema is current (${applied.length} applied)`
    : `migrate: ${pending.length} pending of ${applied.length + pending.length}; \`agentidp migrate up\` applies them`)
  if (unknown.length > 0) note(`migrate: the database has ${unknown.length} migration(s) this build does not bundle (${unknown.join(', ')}): it is newer than this code`)
  if (options.check === true && pending.length > 0) process.exitCode = ExitCode.CHECK_FAILED
}

export function registerMigrateCommands (program: Command): void {
  const group = program.command('migrate')
    .description('apply, revert or list the database migrations (DATABASE_URL)')
  group.command('up')
    .description('apply the pending migrations, a progress line per migration on stderr')
    .addOption(new Option('--count <n>', 'apply at most this many').argParser(positiveInteger))
    .addOption(outputOption())
    .action(migrateUp)
  group.command('down')
    .description('revert the most recently applied migrations (their tables and data are dropped)')
    .addOption(new Option('--count <n>', 'how many to revert').argParser(positiveInteger).default(1))
    .addOption(outputOption())
    .action(migrateDownCommand)
  group.command('status')
    .description('list the applied and the pending migrations; works on a fresh, a partial and a current database')
    .option('--check', `exit ${ExitCode.CHECK_FAILED} when a migration is pending`)
    .addOption(outputOption())
    .action(migrateStatus)
}
