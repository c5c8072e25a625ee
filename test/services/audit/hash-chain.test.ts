import { randomUUID } from 'node:crypto'
import t from 'tap'
import pg from 'pg'
import { build, seedAdmin, seedAgent, type TestApp } from '../../helper.js'
import { canonicalEvent, chainHash, GENESIS_HASH } from '../../../services/audit/chain.js'
import type { ChainedEvent } from '../../../repositories/audit-chain.js'
import { sealBatch } from '../../../services/audit/sealer.js'
import { hasSealableEvents } from '../../../repositories/audit-chain.js'
import { AUDIT, awaitSealable, sealAll, seedEvents, unsealedCount } from '../../support/audit.js'

async function verify (app: TestApp, headers: Record<string, string>, query = '') {
  const res = await app.inject({ method: 'GET', url: `${AUDIT}/verify${query}`, headers })
  if (res.statusCode !== 200) throw new Error(res.body)
  return res.json() as { intact: boolean, checked: number, firstBrokenEventId: string | null }
}

async function seals (app: TestApp): Promise<Array<{ chain_index: string, event_id: string }>> {
  return (await app.pg.query('SELECT chain_index, event_id FROM audit_seals ORDER BY chain_index')).rows
}

t.test('the canonical form is length-prefixed PostgreSQL text, and the hash chains it to its predecessor', async (t) => {
  const event: ChainedEvent = {
    chainIndex: '1',
    eventId: '0b0f6a52-3b1c-4e58-9f3e-0d3f5f0c1a11',
    createdAt: '2026-01-02T03:04:05.123456Z',
    agentId: null,
    action: 'auth.failed',
    outcome: 'failure',
    ipAddress: '192.0.2.1/32',
    userAgent: 'ü',
    metadata: '{"reason": "bad_secret"}'
  }
  t.equal(canonicalEvent(event),
    '17:agentidp-audit-v11:136:0b0f6a52-3b1c-4e58-9f3e-0d3f5f0c1a1127:2026-01-02T03:04:05.123456Z-11:auth.failed7:failure12:192.0.2.1/322:ü24:{"reason": "bad_secret"}')
  // a golden value: changing the canonical form breaks every stored chain, so it must be deliberate
  t.equal(chainHash(GENESIS_HASH, event).toString('hex'), '892068fe3115d744559a30ce9af7cc1ec873498ad23a4620c38acd5f5e845c64')
  t.not(canonicalEvent({ ...event, userAgent: '' }), canonicalEvent({ ...event, userAgent: null }), 'null and empty differ')
  t.not(canonicalEvent({ ...event, action: 'a', outcome: 'bc' }), canonicalEvent({ ...event, action: 'ab', outcome: 'c' }), 'no two field splits collide')
  t.not(chainHash(GENESIS_HASH, event).toString('hex'), chainHash(Buffer.alloc(32, 1), event).toString('hex'), 'the predecessor is covered')
})

/** The chain recomputed by PostgreSQL alone from the stored rows: the canonical form is reproducible outside this code. */
async function sqlRecomputationAgrees (app: TestApp): Promise<{ rows: number, mismatches: number }> {
  const { rows } = await app.pg.query<{ rows: number, mismatches: number }>(`
    WITH chained AS (
      SELECT s.chain_index, s.hash,
        coalesce(lag(s.hash) OVER (ORDER BY s.chain_index), (SELECT prev_hash FROM audit_chain_anchor)) AS prev,
        (SELECT string_agg(CASE WHEN f IS NULL THEN '-' ELSE octet_length(f) || ':' || f END, '' ORDER BY n)
         FROM unnest(ARRAY['agentidp-audit-v1', s.chain_index::text, e.event_id::text,
           to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), e.agent_id::text, e.action::text,
           e.outcome::text, e.ip_address::text, e.user_agent::text, e.metadata::text]) WITH ORDINALITY AS u (f, n)) AS canonical
      FROM audit_seals s JOIN audit_events e ON e.event_id = s.event_id)
    SELECT count(*)::int AS rows, count(*) FILTER (WHERE sha256(prev || convert_to(canonical, 'UTF8')) <> hash)::int AS mismatches FROM chained`)
  return rows[0]
}

t.test('every event of an agent\'s life is sealed once, in one gapless chain that verifies', async (t) => {
  const app = await build(t)
  const admin = await seedAdmin(app)
  const created = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: admin.headers, payload: { email: `c-${randomUUID()}@example.com`, agentType: 'custom', version: '1.0.0', capabilities: ['docs:read'], owner: 'x', deploymentEnv: 'staging' } })
  const url = `/api/v1/agents/${created.json().agentId}`
  await app.inject({ method: 'PATCH', url, headers: admin.headers, payload: { version: '1.0.1' } })
  await app.inject({ method: 'PATCH', url, headers: { authorization: 'Bearer nope' }, payload: { version: '1.0.2' } })
  await seedEvents(app, Array.from({ length: 50 }, (_, n) => ({ metadata: { n, text: 'ünïcode \u2028 "quoted"', nested: { b: [1, null, true], a: 1.5 } } })))
  await sealAll(app)
  const chain = await seals(app)
  const { rows: events } = await app.pg.query<{ count: number }>('SELECT count(*)::int AS count FROM audit_events')
  t.equal(chain.length, events[0].count, 'every event has a seal')
  t.same(chain.map((seal) => Number(seal.chain_index)), chain.map((_, index) => index + 1), 'chain indexes 1..N without gaps')
  t.equal(new Set(chain.map((seal) => seal.event_id)).size, chain.length, 'no event sealed twice')
  t.same(await sqlRecomputationAgrees(app), { rows: chain.length, mismatches: 0 }, 'PostgreSQL alone recomputes every hash')
  t.same(await verify(app, admin.headers), { intact: true, checked: chain.length, firstBrokenEventId: null })
})

t.test('several instances writing and sealing at once form one chain; writers never wait for the sealer', async (t) => {
  const first = await build(t)
  const others = [await build(t, { databaseUrl: first.databaseUrl }), await build(t, { databaseUrl: first.databaseUrl })]
  const instances = [first, ...others]
  const admin = await seedAdmin(first)

  // hold the chain head's lock: no instance can seal, yet every write goes through at once
  const holder = new pg.Client({ connectionString: first.databaseUrl })
  await holder.connect()
  t.teardown(() => holder.end())
  await holder.query('BEGIN')
  await holder.query('SELECT 1 FROM audit_chain FOR UPDATE')
  // the holder lets go only after these writes: a write that waited for the chain would never end
  await Promise.all(instances.map(async (app, n) => {
    for (let i = 0; i < 10; i += 1) {
      const res = await app.inject({ method: 'GET', url: `/api/v1/agents/${randomUUID()}`, headers: admin.headers })
      t.equal(res.statusCode, 404)
      await seedEvents(app, Array.from({ length: 5 }, () => ({ metadata: { instance: n } })))
    }
  }))
  const { rows: written } = await holder.query<{ count: number }>("SELECT count(*)::int AS count FROM audit_events WHERE metadata ? 'instance'")
  t.equal(written[0].count, instances.length * 10 * 5, 'every write is committed while the chain is still held')
  await holder.query('COMMIT')
  // events ready, chain held by another sealer: a sealer skips at once rather than wait. An event
  // is ready only once every older transaction in the cluster has ended, so the holder takes the
  // lock once it is; the instances' own sealers may still seal it in between, so the holder tries
  // again until it holds the chain with a ready event
  let ready = false
  let probes = 0
  for (; probes < 50 && !ready; probes += 1) {
    await awaitSealable(first, await seedEvents(first, [{}]))
    await holder.query('BEGIN')
    await holder.query('SELECT 1 FROM audit_chain FOR UPDATE')
    ready = await hasSealableEvents(first.pg.pool)
    if (!ready) await holder.query('COMMIT')
  }
  t.ok(ready, 'the chain is held while an event is ready to seal')
  // as above, the holder commits only after this returns: a sealer that waited would never return
  t.equal(await sealBatch(first.pg.pool), null, 'a sealer finding the chain busy skips')
  await holder.query('COMMIT')

  // now every instance's sealer runs concurrently, and writers keep writing
  await Promise.all([
    ...instances.map((app) => Promise.all([app.audit.seal(), app.audit.seal()])),
    ...instances.map((app) => seedEvents(app, Array.from({ length: 20 }, () => ({}))))
  ])
  await sealAll(first)
  const chain = await seals(first)
  t.equal(chain.length, 30 * 5 + probes + 60 + (await first.pg.query('SELECT count(*)::int AS n FROM audit_events WHERE action <> $1', ['agent.updated'])).rows[0].n)
  t.same(chain.map((seal) => Number(seal.chain_index)), chain.map((_, index) => index + 1), 'one gapless chain')
  t.equal(new Set(chain.map((seal) => seal.event_id)).size, chain.length, 'each event sealed exactly once')
  t.equal(await unsealedCount(first), 0)
  t.same(await verify(others[1], admin.headers), { intact: true, checked: chain.length, firstBrokenEventId: null })
})

t.test('an event whose transaction commits late is sealed after it commits, never skipped', async (t) => {
  const app = await build(t)
  const admin = await seedAdmin(app)
  await sealAll(app)
  const slow = new pg.Client({ connectionString: app.databaseUrl })
  await slow.connect()
  t.teardown(() => slow.end())
  const lateId = randomUUID()
  await slow.query('BEGIN')
  await slow.query("INSERT INTO audit_events (event_id, action, outcome) VALUES ($1, 'agent.updated', 'success')", [lateId])
  const [earlyId] = await seedEvents(app, [{}])
  await app.audit.seal()
  const sealedBefore = (await seals(app)).map((seal) => seal.event_id)
  t.notOk(sealedBefore.includes(earlyId), 'an event written after a still-open transaction waits for it')
  await slow.query('COMMIT')
  await sealAll(app)
  const order = (await seals(app)).map((seal) => seal.event_id)
  t.ok(order.indexOf(lateId) >= 0 && order.indexOf(earlyId) > order.indexOf(lateId), 'both sealed, in the order their transactions wrote')
  t.equal((await verify(app, admin.headers)).intact, true)
})

t.test('tampering with a sealed event, its seal or the chain\'s end makes verify report where it breaks', async (t) => {
  const app = await build(t)
  const admin = await seedAdmin(app)
  const base = Date.parse('2031-01-01T00:00:00Z')
  const at = (minute: number) => new Date(base + minute * 60_000).toISOString()
  const ids = await seedEvents(app, Array.from({ length: 12 }, (_, minute) => ({ createdAt: at(minute), metadata: { minute } })))
  await sealAll(app)
  const intact = await verify(app, admin.headers)
  t.equal(intact.intact, true)
  const q = (sql: string, values: unknown[] = []) => app.pg.query(sql, values)

  t.test('a changed field', async (t) => {
    const { rows } = await q('SELECT metadata::text AS text FROM audit_events WHERE event_id = $1', [ids[3]])
    await q(`UPDATE audit_events SET metadata = metadata || '{"minute": 99}' WHERE event_id = $1`, [ids[3]])
    t.same(await verify(app, admin.headers), { intact: false, checked: intact.checked - 9, firstBrokenEventId: ids[3] })
    t.same(await verify(app, admin.headers, `?startDate=${at(2)}&endDate=${at(4)}`), { intact: false, checked: 1, firstBrokenEventId: ids[3] }, 'a range holding it breaks too')
    t.same(await verify(app, admin.headers, `?startDate=${at(5)}&endDate=${at(11)}`), { intact: true, checked: 7, firstBrokenEventId: null }, 'a range after it is intact')
    await q('UPDATE audit_events SET metadata = $2::jsonb WHERE event_id = $1', [ids[3], rows[0].text])
    t.equal((await verify(app, admin.headers)).intact, true, 'restored exactly, it verifies again')
  })

  t.test('a timestamp moved by one microsecond', async (t) => {
    await q("UPDATE audit_events SET created_at = created_at + interval '1 microsecond' WHERE event_id = $1", [ids[5]])
    t.equal((await verify(app, admin.headers)).firstBrokenEventId, ids[5])
    await q("UPDATE audit_events SET created_at = created_at - interval '1 microsecond' WHERE event_id = $1", [ids[5]])
    t.equal((await verify(app, admin.headers)).intact, true)
  })

  t.test('a rewritten seal hash', async (t) => {
    const { rows } = await q('SELECT hash FROM audit_seals WHERE event_id = $1', [ids[7]])
    await q("UPDATE audit_seals SET hash = sha256('forged') WHERE event_id = $1", [ids[7]])
    t.equal((await verify(app, admin.headers)).firstBrokenEventId, ids[7])
    await q('UPDATE audit_seals SET hash = $2 WHERE event_id = $1', [ids[7], rows[0].hash])
  })

  t.test('a deleted event, then its seal too', async (t) => {
    const { rows } = await q('SELECT * FROM audit_events WHERE event_id = $1', [ids[8]])
    await q('DELETE FROM audit_events WHERE event_id = $1', [ids[8]])
    t.equal((await verify(app, admin.headers)).firstBrokenEventId, ids[8], 'the seal names the missing event')
    const seal = (await q('DELETE FROM audit_seals WHERE event_id = $1 RETURNING *', [ids[8]])).rows[0]
    t.equal((await verify(app, admin.headers)).firstBrokenEventId, ids[9], 'the gap breaks the chain at the next event')
    t.equal((await verify(app, admin.headers, `?startDate=${at(9)}&endDate=${at(11)}`)).firstBrokenEventId, ids[9], 'also in a range starting after the gap')
    await q('INSERT INTO audit_seals SELECT $1, $2, $3, $4', [seal.chain_index, seal.event_id, seal.hash, seal.created_at])
    const row = rows[0]
    await q('INSERT INTO audit_events (event_id, agent_id, action, outcome, ip_address, user_agent, metadata, created_at, tx_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)',
      [row.event_id, row.agent_id, row.action, row.outcome, row.ip_address, row.user_agent, row.metadata, row.created_at, row.tx_id])
    t.equal((await verify(app, admin.headers)).intact, true)
  })

  t.test('the newest events deleted with their seals', async (t) => {
    const { rows: [head] } = await q('SELECT head_event_id FROM audit_chain')
    const { rows: [last] } = await q('SELECT chain_index FROM audit_seals WHERE event_id = $1', [head.head_event_id])
    await q('DELETE FROM audit_events WHERE event_id IN (SELECT event_id FROM audit_seals WHERE chain_index >= $1)', [last.chain_index])
    await q('DELETE FROM audit_seals WHERE chain_index >= $1', [last.chain_index])
    t.same(await verify(app, admin.headers), { intact: false, checked: intact.checked - 1, firstBrokenEventId: head.head_event_id }, 'the head names what is missing')
  })
})

t.test('verify covers only sealed events: checked grows as events are sealed', async (t) => {
  const app = await build(t)
  const auditor = await seedAgent(app, { capabilities: ['audit:read'] })
  const before = await verify(app, auditor.headers)
  await seedEvents(app, Array.from({ length: 7 }, () => ({})))
  await sealAll(app)
  const after = await verify(app, auditor.headers)
  t.equal(after.checked, before.checked + 7)
  t.equal(after.intact, true)
})
