import t from 'tap'
import { build, seedAgent, testEnv, type TestApp } from '../../helper.js'
import { baseEnv, compiledServer, ensureBuild, runProcess } from '../../support/private-services.js'
import { pruneBatch, pruneExpiredEvents } from '../../../services/audit/retention.js'
import { auditPrune } from '../../../cli/audit-prune.js'
import { AUDIT, awaitSealable, daysAgo, sealAll, seedEvents } from '../../support/audit.js'

async function remaining (app: TestApp): Promise<string[]> {
  return (await app.pg.query<{ event_id: string }>('SELECT event_id FROM audit_events ORDER BY event_id')).rows.map((row) => row.event_id)
}

async function verify (app: TestApp, headers: Record<string, string>) {
  return (await app.inject({ method: 'GET', url: `${AUDIT}/verify`, headers })).json()
}

/** Expired events first (as time makes them), then fresh ones; returns both id lists. */
async function seedAges (app: TestApp, expired: number, fresh: number, days = 30) {
  const old = await seedEvents(app, Array.from({ length: expired }, (_, n) => ({ createdAt: daysAgo(days + 1 + (expired - n) / 1000) })))
  const young = await seedEvents(app, Array.from({ length: fresh }, (_, n) => ({ createdAt: daysAgo(days - 1 - (fresh - n) / 1000) })))
  return { old, young }
}

t.test('retention deletes exactly the expired events, in bounded batches, and the chain still verifies', async (t) => {
  const app = await build(t, { env: { AUDIT_RETENTION_DAYS: '30' } })
  const auditor = await seedAgent(app, { capabilities: ['audit:read'] })
  const { old, young } = await seedAges(app, 1234, 321)
  await sealAll(app)
  const survivors = [...young, ...(await remaining(app)).filter((id) => !old.includes(id) && !young.includes(id))].sort()

  const deleted = await pruneExpiredEvents(app.pg.pool, 30, { batchSize: 100 })

  t.equal(deleted, 1234, 'every expired event')
  t.same(await remaining(app), survivors, 'and nothing else')
  const { rows: [anchor] } = await app.pg.query('SELECT first_index::int AS first_index FROM audit_chain_anchor')
  t.equal(anchor.first_index, 1235, 'the chain is anchored on the first event kept')
  const result = await verify(app, auditor.headers)
  t.same(result, { intact: true, checked: survivors.length, firstBrokenEventId: null }, 'what is left verifies from the anchor')
  t.equal(await pruneExpiredEvents(app.pg.pool, 30), 0, 'a second run finds nothing')
  t.equal(await pruneExpiredEvents(app.pg.pool, 0), 0, '0 keeps everything')
})

t.test('several instances pruning at once delete each event once and keep one consistent anchor', async (t) => {
  const app = await build(t)
  const others = [await build(t, { databaseUrl: app.databaseUrl }), await build(t, { databaseUrl: app.databaseUrl })]
  const auditor = await seedAgent(app, { capabilities: ['audit:read'] })
  const { old } = await seedAges(app, 3000, 50, 10)
  await sealAll(app)
  const before = (await remaining(app)).length

  const counts = await Promise.all([app, ...others, app].map((instance) => pruneExpiredEvents(instance.pg.pool, 10, { batchSize: 250 })))
  // a pruner that found the anchor busy stops; run again until nothing is left, as the schedule would
  let total = counts.reduce((sum, n) => sum + n, 0)
  for (let n = 0; n < 20 && total < old.length; n += 1) total += await pruneExpiredEvents(app.pg.pool, 10, { batchSize: 250 })

  t.equal(total, old.length, 'each expired event deleted exactly once')
  t.equal((await remaining(app)).length, before - old.length)
  t.same(await verify(others[0], auditor.headers), { intact: true, checked: before - old.length, firstBrokenEventId: null })
})

t.test('a pruner finding the anchor held by another returns at once', async (t) => {
  const app = await build(t)
  await seedAges(app, 10, 0, 10)
  await sealAll(app)
  const client = await app.pg.pool.connect()
  t.teardown(() => client.release())
  await client.query('BEGIN')
  await client.query('SELECT 1 FROM audit_chain_anchor FOR UPDATE')
  // the lock is released only after this returns: a pruner that waited for it would never return
  t.equal(await pruneBatch(app.pg.pool, new Date(), 100), null, 'returned while the anchor was held')
  await client.query('ROLLBACK')
  t.same(await pruneBatch(app.pg.pool, new Date(Date.now() - 5 * 86_400_000), 100), { pruned: 10, deleted: 10 })
})

t.test('an expired event sealed after a fresh one waits for it: the chain is cut only at its start', async (t) => {
  const app = await build(t)
  const auditor = await seedAgent(app, { capabilities: ['audit:read'] })
  const [fresh] = await seedEvents(app, [{ createdAt: daysAgo(1) }])
  const [late] = await seedEvents(app, [{ createdAt: daysAgo(100) }])
  await sealAll(app)
  t.equal(await pruneExpiredEvents(app.pg.pool, 30), 0)
  t.ok((await remaining(app)).includes(late) && (await remaining(app)).includes(fresh))
  t.equal((await verify(app, auditor.headers)).intact, true)
})

t.test('a prune run beside a sealer at work waits for it, then seals and deletes what expired', async (t) => {
  // the app's own sealer stays idle for the test (its first run is a minute away), so the events stay unsealed
  const app = await build(t, { env: { AUDIT_RETENTION_DAYS: '0', AUDIT_SEAL_INTERVAL_MS: '60000' } })
  const { old, young } = await seedAges(app, 20, 2, 30)
  // the run has something to seal only once the events are ready: else it would rightly return 0 at once
  await awaitSealable(app, [...old, ...young])
  // another instance's sealer holds the chain head (its watermark predates these events)
  const sealer = await app.pg.pool.connect()
  t.teardown(() => sealer.release())
  await sealer.query('BEGIN')
  await sealer.query('SELECT 1 FROM audit_chain FOR UPDATE')
  let settled = false
  const run = pruneExpiredEvents(app.pg.pool, 30).finally(() => { settled = true })
  // the run is parked on the lock, not returning 0
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(settled, false, 'still waiting while the other sealer works')
  await sealer.query('COMMIT')
  t.equal(await run, old.length, 'every expired event, once the other sealer is done')
  const left = await remaining(app)
  t.ok(young.every((id) => left.includes(id)), 'the fresh ones stay')
})

t.test('the jobs plugin prunes on its own at AUDIT_RETENTION_INTERVAL_SECONDS and stops on close', async (t) => {
  const app = await build(t, { env: { AUDIT_RETENTION_DAYS: '7', AUDIT_RETENTION_INTERVAL_SECONDS: '1' } })
  const { old } = await seedAges(app, 25, 5, 7)
  const deadline = Date.now() + 60_000
  while ((await remaining(app)).some((id) => old.includes(id)) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100))
  t.notOk((await remaining(app)).some((id) => old.includes(id)), 'every expired event is gone without anyone calling prune')
  await app.close()
  t.pass('closing the app stops the job without waiting for its interval')
})

t.test('audit-prune (the cron command) deletes the expired events of DATABASE_URL', async (t) => {
  // the app's own retention job stays off: on a loaded machine its first run (60 s in) could take
  // the chain's anchor while the command runs, and the command would rightly find nothing to do
  const app = await build(t, { env: { AUDIT_RETENTION_DAYS: '0' } })
  const { old, young } = await seedAges(app, 40, 3, 30)
  // the command seals first, as only sealed events can be cut off the chain; it deletes every
  // expired event once they are ready to seal (another test file's transaction can delay that)
  await awaitSealable(app, old)
  t.same(await auditPrune(app.databaseUrl, 30), { deleted: old.length, retentionDays: 30 })
  const left = await remaining(app)
  t.ok(young.every((id) => left.includes(id)))
  t.notOk(old.some((id) => left.includes(id)))
})

t.test('node dist/server.js audit-prune prints one JSON line and exits 0; a bad environment exits 1 with one line', async (t) => {
  await ensureBuild()
  const app = await build(t, { env: { AUDIT_RETENTION_DAYS: '0' } })
  const { old } = await seedAges(app, 12, 2, 30)
  await awaitSealable(app, old)
  const env = { ...baseEnv(), ...testEnv(app.databaseUrl), NODE_ENV: 'production', AUDIT_RETENTION_DAYS: '30' }
  const run = await runProcess(t, process.execPath, [compiledServer, 'audit-prune'], { env })
  t.equal(run.code, 0, run.stderr)
  t.same(run.stdout.trim().split('\n').map((line) => JSON.parse(line)), [{ deleted: old.length, retentionDays: 30 }])
  const bad = await runProcess(t, process.execPath, [compiledServer, 'audit-prune'], { env: { ...env, AUDIT_RETENTION_DAYS: 'forever' } })
  t.equal(bad.code, 1)
  t.equal(bad.stdout, '')
  t.match(bad.stderr.trim(), /^configuration error: AUDIT_RETENTION_DAYS is malformed/)
})
