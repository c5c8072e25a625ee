import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { build } from '../helper.js'
import { daysAgo, sealAll, seedEvents } from '../support/audit.js'
import { ensureBuild, sparePort } from '../support/private-services.js'
import { agentidp, json } from '../support/cli.js'

/**
 * `agentidp audit prune|verify|export` on the database (DATABASE_URL of a schema of its own,
 * events seeded directly): results on stdout, progress on stderr, NDJSON oldest first, exit 6 for a
 * broken chain.
 */
// some twenty command processes, each a node start-up: on a busy 2-core machine far beyond .taprc's 120 s
t.setTimeout(300_000)
await ensureBuild()
const app = await build(t)
const env = { DATABASE_URL: app.databaseUrl }
const work = await mkdtemp(join(tmpdir(), 'agentidp-cli-audit-'))
t.teardown(() => rm(work, { recursive: true, force: true }))

// 40 events from 40 days ago, 2500 from the last days (more than one export batch)
const old = await seedEvents(app, Array.from({ length: 40 }, (_, n) => ({ createdAt: daysAgo(40 - n / 1000), action: 'agent.updated' })))
const recent = await seedEvents(app, Array.from({ length: 2500 }, (_, n) => ({ createdAt: daysAgo(5 - n / 1000), action: 'token.issued' })))
await sealAll(app)

interface Event { eventId: string, timestamp: string, action: string }

t.test('audit export: NDJSON oldest first, --since/--until inclusive, a count on stderr', async (t) => {
  const everything = await agentidp(t, ['audit', 'export'], { env })
  t.equal(everything.code, 0, { stderr: everything.stderr })
  const events = everything.stdout.trim().split('\n').map((line) => JSON.parse(line) as Event)
  const { rows: [{ count }] } = await app.pg.query<{ count: number }>('SELECT count(*)::int AS count FROM audit_events')
  t.equal(events.length, count, 'every event, across batches')
  t.same(events.slice(0, old.length).map((event) => event.eventId), old, 'oldest first')
  t.ok(events.every((event, n) => n === 0 || events[n - 1].timestamp <= event.timestamp), 'in time order')
  t.match(everything.stderr, new RegExp(`audit export: ${count} events`))

  const since = daysAgo(10)
  const recentOnly = (await agentidp(t, ['audit', 'export', '--since', since], { env })).stdout.trim().split('\n').map((line) => JSON.parse(line) as Event)
  t.same(recentOnly.map((event) => event.eventId).slice(0, recent.length), recent, '--since leaves the older events out')
  t.ok(recentOnly.every((event) => event.timestamp >= since))

  const until = daysAgo(30)
  const oldOnly = (await agentidp(t, ['audit', 'export', '--until', until], { env })).stdout.trim().split('\n').map((line) => JSON.parse(line) as Event)
  t.same(oldOnly.map((event) => event.eventId), old, '--until leaves the newer events out')

  const file = join(work, 'export.ndjson')
  const toFile = await agentidp(t, ['audit', 'export', '--since', since, '--output-file', file], { env })
  t.equal(toFile.code, 0)
  t.equal(toFile.stdout, '', 'nothing on stdout with --output-file')
  t.equal((await stat(file)).mode & 0o777, 0o600)
  t.equal((await readFile(file, 'utf8')).trim().split('\n').length, recentOnly.length)
  const refused = await agentidp(t, ['audit', 'export', '--output-file', file], { env })
  t.equal(refused.code, 3, 'an existing file is refused')
})

t.test('audit verify: intact, exit 0, with the count; a tampered event: exit 6 naming it', async (t) => {
  const intact = await agentidp(t, ['audit', 'verify'], { env })
  t.equal(intact.code, 0, { stderr: intact.stderr })
  const result = json<{ intact: boolean, checked: number, firstBrokenEventId: string | null }>(intact)
  t.equal(result.intact, true)
  t.ok(result.checked >= old.length + recent.length)
  t.match(intact.stderr, /audit verify: intact/)

  const ranged = json<{ intact: boolean, checked: number }>(await agentidp(t, ['audit', 'verify', '--since', daysAgo(45), '--until', daysAgo(30)], { env }))
  t.same(ranged, { intact: true, checked: old.length, firstBrokenEventId: null }, 'a time range checks only its events')

  const table = await agentidp(t, ['audit', 'verify', '--output', 'table'], { env })
  t.match(table.stdout, /^intact\s+true$/m)

  await app.pg.query('UPDATE audit_events SET metadata = \'{"forged":true}\' WHERE event_id = $1', [recent[10]])
  const broken = await agentidp(t, ['audit', 'verify'], { env })
  t.equal(broken.code, 6, 'a broken chain: exit 6')
  t.same(json(broken), { intact: false, checked: old.length + 10, firstBrokenEventId: recent[10] })
  t.match(broken.stderr, new RegExp(`broken at event ${recent[10]}`))
  await app.pg.query('UPDATE audit_events SET metadata = \'{}\' WHERE event_id = $1', [recent[10]])
})

t.test('audit prune --retention-days: deletes the expired events, progress on stderr; the chain still verifies', async (t) => {
  const pruned = await agentidp(t, ['audit', 'prune', '--retention-days', '30'], { env })
  t.equal(pruned.code, 0, { stderr: pruned.stderr })
  t.same(json(pruned), { deleted: old.length, retentionDays: 30 })
  t.match(pruned.stderr, new RegExp(`audit prune: ${old.length} deleted so far`))
  const { rows } = await app.pg.query<{ count: number }>('SELECT count(*)::int AS count FROM audit_events WHERE event_id = ANY($1::uuid[])', [old])
  t.equal(rows[0].count, 0)
  t.equal((await agentidp(t, ['audit', 'verify'], { env })).code, 0, 'what is left verifies')
  t.same(json(await agentidp(t, ['audit', 'prune', '--retention-days', '30'], { env })), { deleted: 0, retentionDays: 30 }, 'a second run finds nothing')
})

t.test('failures: without --retention-days the server\'s configuration is required; an unreachable database; exit 1, one line', async (t) => {
  const unconfigured = await agentidp(t, ['audit', 'prune'], { env, cwd: '/' })
  t.equal(unconfigured.code, 1)
  t.match(unconfigured.stderr, /^configuration error: /)
  t.equal(unconfigured.stdout, '')

  const closed = await sparePort()
  for (const command of [['audit', 'verify'], ['audit', 'export'], ['audit', 'prune', '--retention-days', '30']]) {
    const result = await agentidp(t, command, { env: { DATABASE_URL: `postgres://u:s3cret-pw@127.0.0.1:${closed}/agentidp` } })
    t.equal(result.code, 1, `${command.join(' ')}: exit 1`)
    t.equal(result.stdout, '')
    t.notOk(result.stderr.includes('s3cret-pw'))
    t.equal(result.stderr.trim().split('\n').length, 1, 'one line', { stderr: result.stderr })
  }
})

t.test('the file export refuses is left as it was', async (t) => {
  const file = join(work, 'keep.ndjson')
  await writeFile(file, 'keep\n')
  t.equal((await agentidp(t, ['audit', 'export', '--output-file', file], { env })).code, 3)
  t.equal(await readFile(file, 'utf8'), 'keep\n')
})
