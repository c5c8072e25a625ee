import { rm } from 'node:fs/promises'
import { finished } from 'node:stream/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { InvalidArgumentError, Option, type Command } from 'commander'
import { exportAuditEvents, type ExportPosition } from '../../repositories/audit-events.js'
import { verifyChain } from '../../services/audit/verify.js'
import { auditPrune } from '../audit-prune.js'
import { apiClient, apiCommand, type ApiClient } from '../api-client.js'
import { instant, nonNegativeInteger, positiveInteger, uuid } from '../arguments.js'
import { ExitCode } from '../exit-codes.js'
import { createPrivateFile } from '../files.js'
import { note, outputOption, print, printJson, resolveFormat, type OutputFormat } from '../output.js'
import { asCliError, databaseUnusable, databaseUrlFromEnvironment, serverConfig, withPool } from '../startup.js'

/**
 * The audit trail. On the database (DATABASE_URL), for operators and cron: `prune` (retention),
 * `verify` (the hash chain), `export` (NDJSON, oldest first); progress on stderr for long runs.
 * On a running server, with client credentials (audit:read): `tail [--follow]`.
 */

const PROGRESS_EVERY = 10_000
const EXPORT_BATCH = 1000

// -- prune -----------------------------------------------------------------------------------

interface PruneOptions { retentionDays?: number, output?: string }

/** The legacy `audit-prune` and `audit prune`: one result document on stdout, progress on stderr. */
export async function prune (options: PruneOptions): Promise<void> {
  // without --retention-days the server's whole configuration is read, as the server would
  const { databaseUrl, retentionDays } = options.retentionDays === undefined
    ? (({ DATABASE_URL, AUDIT_RETENTION_DAYS }) => ({ databaseUrl: DATABASE_URL, retentionDays: AUDIT_RETENTION_DAYS }))(serverConfig())
    : { databaseUrl: databaseUrlFromEnvironment(), retentionDays: options.retentionDays }
  const result = await auditPrune(databaseUrl, retentionDays, (deleted) => note(`audit prune: ${deleted} deleted so far`))
    .catch((error: unknown) => { throw asCliError(error) })
  print(resolveFormat(options.output), result)
}

// -- verify ----------------------------------------------------------------------------------

async function verify (options: { since?: string, until?: string, output?: string }): Promise<void> {
  const databaseUrl = databaseUrlFromEnvironment()
  let lastReported = 0
  const result = await withPool(databaseUrl, (pool) => verifyChain(pool, { startDate: options.since, endDate: options.until }, undefined, (checked) => {
    if (checked - lastReported >= PROGRESS_EVERY) {
      lastReported = checked
      note(`audit verify: ${checked} events checked`)
    }
  })).catch((error: unknown) => { throw databaseUnusable(databaseUrl, error) })
  print(resolveFormat(options.output), result)
  if (!result.intact) {
    note(`audit verify: the chain is broken at event ${result.firstBrokenEventId ?? '(unknown)'} after ${result.checked} intact events`)
    process.exitCode = ExitCode.CHECK_FAILED
  } else {
    note(`audit verify: intact (${result.checked} sealed events checked; events not sealed yet are not)`)
  }
}

// -- export ----------------------------------------------------------------------------------

async function writeLine (stream: NodeJS.WritableStream, line: string): Promise<void> {
  if (!stream.write(line)) await new Promise((resolve) => stream.once('drain', resolve))
}

/** Every event of the range, oldest first, batch by batch; returns how many were written. */
async function writeEvents (databaseUrl: string, out: NodeJS.WritableStream, range: { since?: string, until?: string }): Promise<number> {
  return await withPool(databaseUrl, async (pool) => {
    let exported = 0
    let after: ExportPosition | undefined
    for (;;) {
      const { events, last } = await exportAuditEvents(pool, { ...range, after, limit: EXPORT_BATCH })
      for (const event of events) await writeLine(out, JSON.stringify(event) + '\n')
      exported += events.length
      if (events.length > 0 && exported % PROGRESS_EVERY < events.length) note(`audit export: ${exported} events`)
      if (last === null || events.length < EXPORT_BATCH) return exported
      after = last
    }
  }).catch((error: unknown) => { throw databaseUnusable(databaseUrl, error) })
}

async function exportEvents (options: { since?: string, until?: string, outputFile?: string, force?: boolean }): Promise<void> {
  const databaseUrl = databaseUrlFromEnvironment()
  const range = { since: options.since, until: options.until }
  if (options.outputFile === undefined) {
    note(`audit export: ${await writeEvents(databaseUrl, process.stdout, range)} events`)
    return
  }
  const file = await createPrivateFile(options.outputFile, options)
  const stream = file.handle.createWriteStream()
  try {
    const exported = await writeEvents(databaseUrl, stream, range)
    stream.end()
    await finished(stream)
    note(`audit export: ${exported} events written to ${file.path}`)
  } catch (error) {
    // half an export is no export: the file goes
    stream.destroy()
    await rm(file.path, { force: true })
    throw error
  }
}

// -- tail ------------------------------------------------------------------------------------

type AuditEvent = Record<string, unknown> & { eventId: string, timestamp: string, metadata?: Record<string, unknown> }
interface AuditPage { data: AuditEvent[], nextCursor: string | null }
interface TailOptions { follow?: boolean, limit: number, interval: number, agentId?: string, action?: string, outcome?: string, output?: string }

/** Events committed out of order by concurrent transactions are caught by looking back this far on each poll. */
const FOLLOW_OVERLAP_MS = 5000
const MAX_PAGES_PER_POLL = 50

function tailLine (format: OutputFormat, event: AuditEvent): void {
  if (format === 'json') {
    printJson(event)
    return
  }
  const actor = event.metadata?.actorId
  process.stdout.write(`${event.timestamp}  ${String(event.action).padEnd(22)}  ${String(event.outcome).padEnd(7)}  ` +
    `agent=${String(event.agentId ?? '-')}  actor=${typeof actor === 'string' ? actor : '-'}  ${event.eventId}\n`)
}

const byTime = (a: AuditEvent, b: AuditEvent) => a.timestamp < b.timestamp ? -1 : a.timestamp > b.timestamp ? 1 : a.eventId < b.eventId ? -1 : 1

/** Every event since `startDate` (newest first from the API, paged), up to a bound. */
async function eventsSince (client: ApiClient, filters: Record<string, string | undefined>, startDate: string): Promise<AuditEvent[]> {
  const events: AuditEvent[] = []
  let cursor: string | undefined
  for (let page = 0; page < MAX_PAGES_PER_POLL; page += 1) {
    const result = await client.call<AuditPage>('GET', '/api/v1/audit', { query: { ...filters, startDate, limit: 200, cursor } })
    events.push(...result.data)
    if (result.nextCursor === null) break
    cursor = result.nextCursor
  }
  return events
}

async function tail (options: TailOptions, command: Command): Promise<void> {
  const client = apiClient(command)
  const format = resolveFormat(options.output)
  const filters = { agentId: options.agentId, action: options.action, outcome: options.outcome }
  const first = await client.call<AuditPage>('GET', '/api/v1/audit', { query: { ...filters, limit: options.limit } })
  const recent = [...first.data].sort(byTime)
  for (const event of recent) tailLine(format, event)
  if (options.follow !== true) return

  const stop = new AbortController()
  const onSignal = () => stop.abort()
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const seen = new Map<string, number>(recent.map((event) => [event.eventId, Date.parse(event.timestamp)]))
  let watermark = recent.length === 0 ? Date.now() : Math.max(...seen.values())
  try {
    while (!stop.signal.aborted) {
      await sleep(options.interval * 1000, undefined, { signal: stop.signal }).catch(() => {})
      if (stop.signal.aborted) break
      const since = new Date(watermark - FOLLOW_OVERLAP_MS).toISOString()
      const fresh = (await eventsSince(client, filters, since)).filter((event) => !seen.has(event.eventId)).sort(byTime)
      for (const event of fresh) {
        tailLine(format, event)
        const at = Date.parse(event.timestamp)
        seen.set(event.eventId, at)
        watermark = Math.max(watermark, at)
      }
      for (const [eventId, at] of seen) if (at < watermark - 2 * FOLLOW_OVERLAP_MS) seen.delete(eventId)
    }
  } finally {
    process.removeListener('SIGINT', onSignal)
    process.removeListener('SIGTERM', onSignal)
  }
}

function seconds (value: string): number {
  const parsed = Number(value)
  if (!/^\d+(\.\d+)?$/.test(value) || parsed < 0.1 || parsed > 3600) throw new InvalidArgumentError('a number of seconds from 0.1 to 3600 is required')
  return parsed
}

function maxLimit (limit: number) {
  return (value: string) => {
    const parsed = positiveInteger(value)
    if (parsed > limit) throw new InvalidArgumentError(`at most ${limit}`)
    return parsed
  }
}

export function registerAuditCommands (program: Command): void {
  const group = program.command('audit').description('the audit trail: prune, verify and export on the database; tail on a running server')
  group.command('prune')
    .description('delete events older than the retention period (DATABASE_URL; without --retention-days, the server\'s configuration and AUDIT_RETENTION_DAYS)')
    .addOption(new Option('--retention-days <days>', 'keep this many days (0 keeps everything)').argParser(nonNegativeInteger))
    .addOption(outputOption())
    .addHelpText('after', '\nFor cron: prints {"deleted","retentionDays"}; progress on stderr. Safe beside running servers.')
    .action(prune)
  group.command('verify')
    .description(`recompute the hash chain over the sealed events (DATABASE_URL); exit ${ExitCode.CHECK_FAILED} when it is broken`)
    .option('--since <instant>', 'from this ISO 8601 instant (default: the whole retained chain)', instant)
    .option('--until <instant>', 'up to this instant', instant)
    .addOption(outputOption())
    .action(verify)
  group.command('export')
    .description('write events as NDJSON (one JSON event per line), oldest first (DATABASE_URL); progress on stderr')
    .option('--since <instant>', 'from this ISO 8601 instant, inclusive (default: the oldest retained)', instant)
    .option('--until <instant>', 'up to this instant, inclusive', instant)
    .option('--output-file <file>', 'write to this file (mode 0600) instead of stdout')
    .option('--force', 'with --output-file: replace a file that exists')
    .action(exportEvents)
  apiCommand(group.command('tail')
    .description('show the latest events from a running server, oldest first (audit:read); --follow keeps polling')
    .option('-f, --follow', 'keep printing new events until interrupted (Ctrl-C: exit 0)')
    .addOption(new Option('--limit <n>', 'how many recent events to show first (1–200)').argParser(maxLimit(200)).default(20))
    .addOption(new Option('--interval <seconds>', 'with --follow: seconds between polls').argParser(seconds).default(2))
    .option('--agent-id <agentId>', 'only events about this agent', uuid)
    .option('--action <action>', 'only this action, e.g. token.issued')
    .addOption(new Option('--outcome <outcome>', 'only this outcome').choices(['success', 'failure']))
    .action(tail))
}

/** `node dist/server.js audit-prune`, as before `audit prune` existed: one JSON line on stdout. */
export function registerLegacyAuditPrune (program: Command): void {
  program.command('audit-prune', { hidden: true }).description('the same as audit prune --output json').action(() => prune({ output: 'json' }))
}
