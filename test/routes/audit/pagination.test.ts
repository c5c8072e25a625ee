import t from 'tap'
import { build, seedAgent } from '../../helper.js'
import { AUDIT, seedEvents } from '../../support/audit.js'

t.test('paging through every event returns each exactly once while new events keep arriving', async (t) => {
  const app = await build(t)
  const auditor = await seedAgent(app, { capabilities: ['audit:read'] })
  // 300 events in one transaction share one timestamp: the keyset's event_id breaks the tie
  const initial = new Set([
    ...await seedEvents(app, Array.from({ length: 300 }, () => ({}))),
    ...await seedEvents(app, Array.from({ length: 120 }, (_, n) => ({ createdAt: new Date(Date.now() - n * 1000).toISOString() })))
  ])
  for (const row of (await app.pg.query<{ event_id: string }>('SELECT event_id FROM audit_events')).rows) initial.add(row.event_id)

  const arrived = new Set<string>()
  let writing = true
  const writer = (async () => {
    while (writing) {
      for (const id of await seedEvents(app, [{}, {}, {}])) arrived.add(id)
      // a request that writes an event (a refusal) as well
      await app.inject({ method: 'GET', url: '/api/v1/agents', headers: auditor.headers })
      await new Promise((resolve) => setImmediate(resolve))
    }
  })()

  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const res = await app.inject({ method: 'GET', url: `${AUDIT}?limit=37${cursor === null ? '' : `&cursor=${cursor}`}`, headers: auditor.headers })
    t.equal(res.statusCode, 200)
    const page = res.json() as { data: Array<{ eventId: string }>, nextCursor: string | null }
    seen.push(...page.data.map((event) => event.eventId))
    cursor = page.nextCursor
    pages += 1
    await new Promise((resolve) => setTimeout(resolve, 2))
  } while (cursor !== null)
  writing = false
  await writer

  t.ok(arrived.size > 0, `${arrived.size} events arrived during ${pages} pages`)
  t.equal(new Set(seen).size, seen.length, 'no event appears twice')
  t.same([...initial].filter((id) => !seen.includes(id)), [], 'every event present at the start appears')
  const { rows } = await app.pg.query<{ event_id: string }>('SELECT event_id FROM audit_events')
  const extra = seen.filter((id) => !initial.has(id))
  t.ok(extra.every((id) => rows.some((row) => row.event_id === id)), 'anything else seen is a real event that arrived meanwhile')
})
