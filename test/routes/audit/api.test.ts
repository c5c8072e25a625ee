import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build, seedAdmin, seedAgent } from '../../helper.js'
import { assertProblem, assertValidationError, auditByActor } from '../agents/support.js'
import { AUDIT, sealAll, seedEvents } from '../../support/audit.js'

const app = await build(t)
const admin = await seedAdmin(app)
const auditor = await seedAgent(app, { capabilities: ['audit:read'] })

async function list (query: string, headers = auditor.headers) {
  return await app.inject({ method: 'GET', url: `${AUDIT}${query}`, headers })
}

t.test('an event reads back with every field of API.md, newest first', async (t) => {
  const created = await app.inject({
    method: 'POST',
    url: '/api/v1/agents',
    headers: { ...admin.headers, 'user-agent': 'api-test/2' },
    payload: { email: `a-${randomUUID()}@example.com`, agentType: 'router', version: '1.0.0', capabilities: ['docs:read'], owner: 'o', deploymentEnv: 'staging' }
  })
  t.equal(created.statusCode, 201)
  const agentId = created.json().agentId
  const res = await list(`?agentId=${agentId}`)
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.equal(body.data.length, 1)
  t.equal(body.nextCursor, null)
  const event = body.data[0]
  t.same(Object.keys(event).sort(), ['action', 'agentId', 'eventId', 'ipAddress', 'metadata', 'outcome', 'timestamp', 'userAgent'])
  t.match(event, { agentId, action: 'agent.created', outcome: 'success', ipAddress: '127.0.0.1', userAgent: 'api-test/2', metadata: { actorId: admin.agent.agentId } })
  t.match(event.timestamp, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/)

  const one = await app.inject({ method: 'GET', url: `${AUDIT}/${event.eventId}`, headers: auditor.headers })
  t.equal(one.statusCode, 200)
  t.same(one.json(), event)
})

t.test('filters combine: agentId, action, outcome, startDate, endDate', async (t) => {
  const agentA = randomUUID()
  const agentB = randomUUID()
  const base = Date.parse('2030-01-01T00:00:00Z')
  const at = (minutes: number) => new Date(base + minutes * 60_000).toISOString()
  await seedEvents(app, [
    { agentId: agentA, action: 'token.issued', createdAt: at(0) },
    { agentId: agentA, action: 'auth.failed', outcome: 'failure', createdAt: at(1) },
    { agentId: agentB, action: 'token.issued', createdAt: at(2) },
    { agentId: agentA, action: 'token.issued', createdAt: at(3) },
    { agentId: agentB, action: 'access.denied', outcome: 'failure', createdAt: at(4) }
  ])
  const actions = async (query: string) => (await list(query)).json().data.map((event: { action: string, agentId: string }) => `${event.agentId === agentA ? 'A' : 'B'}:${event.action}`)
  const window = `startDate=${at(0)}&endDate=${at(4)}`
  t.same(await actions(`?${window}`), ['B:access.denied', 'A:token.issued', 'B:token.issued', 'A:auth.failed', 'A:token.issued'], 'newest first')
  t.same(await actions(`?${window}&agentId=${agentA}`), ['A:token.issued', 'A:auth.failed', 'A:token.issued'])
  t.same(await actions(`?${window}&action=token.issued`), ['A:token.issued', 'B:token.issued', 'A:token.issued'])
  t.same(await actions(`?${window}&outcome=failure`), ['B:access.denied', 'A:auth.failed'])
  t.same(await actions(`?agentId=${agentA}&action=token.issued&outcome=success`), ['A:token.issued', 'A:token.issued'])
  t.same(await actions(`?agentId=${agentB}&action=token.issued&outcome=failure`), [])
  t.same(await actions(`?agentId=${agentA}&startDate=${at(1)}&endDate=${at(3)}`), ['A:token.issued', 'A:auth.failed'], 'both ends inclusive')
  t.same(await actions(`?agentId=${agentA}&startDate=${encodeURIComponent('2030-01-01T01:01:00+01:00')}`), ['A:token.issued', 'A:auth.failed'], 'offsets are honoured')
})

t.test('pages of `limit` follow nextCursor to the end; limit defaults to 50 and is bounded 1–200', async (t) => {
  const agentId = randomUUID()
  await seedEvents(app, Array.from({ length: 120 }, () => ({ agentId })))
  const first = (await list(`?agentId=${agentId}`)).json()
  t.equal(first.data.length, 50, 'default limit 50')
  const seen: string[] = []
  let cursor: string | null = null
  do {
    const res = await list(`?agentId=${agentId}&limit=33${cursor === null ? '' : `&cursor=${cursor}`}`)
    t.equal(res.statusCode, 200)
    const page = res.json()
    seen.push(...page.data.map((event: { eventId: string }) => event.eventId))
    cursor = page.nextCursor
  } while (cursor !== null)
  t.equal(seen.length, 120)
  t.equal(new Set(seen).size, 120, 'no event twice')
  t.equal((await list(`?agentId=${agentId}&limit=200`)).json().data.length, 120)
  for (const limit of ['0', '201', '-1', 'x', '1.5', '1e309', 'Infinity']) assertValidationError(t, await list(`?limit=${limit}`), /limit/)
})

t.test('bad dates, startDate after endDate, unknown parameters and bad cursors are 400 VALIDATION_ERROR', async (t) => {
  for (const date of ['yesterday', '2026-13-01T00:00:00Z', '2026-02-30T00:00:00Z', '2026-01-01', '2026-01-01T00:00:00', '0000-01-01T00:00:00Z', '2026-01-01T25:00:00Z',
    // offsets PostgreSQL refuses were 500s (issue 11, defect 9)
    '2026-01-01T00:00:00+16:00', '2026-01-01T00:00:00-23:59']) {
    assertValidationError(t, await list(`?startDate=${encodeURIComponent(date)}`), 'querystring.startDate')
    assertValidationError(t, await list(`?endDate=${encodeURIComponent(date)}`), 'querystring.endDate')
  }
  assertValidationError(t, await list('?startDate=2026-02-01T00:00:00Z&endDate=2026-01-01T00:00:00Z'), 'querystring.startDate')
  assertValidationError(t, await list('?outcome=maybe'), /outcome/)
  assertValidationError(t, await list('?agentId=not-a-uuid'), /agentId/)
  assertValidationError(t, await list('?action=DROP%20TABLE'), /action/)
  assertValidationError(t, await list('?agent=x'), /agent/)
  assertValidationError(t, await list('?cursor=bm9wZQ'), 'querystring.cursor')
  t.equal((await list('?startDate=2026-01-01T00:00:00Z&endDate=2026-01-01T00:00:00Z')).statusCode, 200, 'start = end is a range of one instant')
  assertValidationError(t, await app.inject({ method: 'GET', url: `${AUDIT}/verify?startDate=2026-02-01T00:00:00Z&endDate=2026-01-01T00:00:00Z`, headers: auditor.headers }), 'querystring.startDate')
  assertValidationError(t, await app.inject({ method: 'GET', url: `${AUDIT}/verify?startDate=nope`, headers: auditor.headers }), 'querystring.startDate')
})

t.test('an unknown event is 404 AUDIT_EVENT_NOT_FOUND; a malformed id is 400', async (t) => {
  assertProblem(t, await app.inject({ method: 'GET', url: `${AUDIT}/${randomUUID()}`, headers: auditor.headers }), 404, 'AUDIT_EVENT_NOT_FOUND')
  assertValidationError(t, await app.inject({ method: 'GET', url: `${AUDIT}/123`, headers: auditor.headers }), /eventId/)
})

t.test('without audit:read every audit route is 403 insufficient_scope, and the refusal is audited', async (t) => {
  const agent = await seedAgent(app, { capabilities: ['agents:read', 'agents:write'] })
  const [eventId] = await seedEvents(app, [{ agentId: agent.agent.agentId }])
  for (const url of [AUDIT, `${AUDIT}/${eventId}`, `${AUDIT}/verify`, `${AUDIT}?agentId=${agent.agent.agentId}`]) {
    const res = await app.inject({ method: 'GET', url, headers: agent.headers })
    assertProblem(t, res, 403, 'FORBIDDEN')
    t.match(res.headers['www-authenticate'], /insufficient_scope/)
    t.match(res.headers['www-authenticate'], /scope="audit:read"/)
  }
  const denied = (await auditByActor(app, agent.agent.agentId)).filter((event) => event.action === 'access.denied')
  t.equal(denied.length, 4, 'one access.denied per refusal')
  t.same([...new Set(denied.map((event) => event.metadata.policyAction))].sort(), ['audit.list', 'audit.read', 'audit.verify'])
  assertProblem(t, await app.inject({ method: 'GET', url: AUDIT }), 401, 'UNAUTHORIZED')
})

t.test('verify answers {intact, checked, firstBrokenEventId}', async (t) => {
  // what verify checks is the sealed chain: seal every event written so far (the background
  // sealer can be held back by any older transaction in the cluster)
  await sealAll(app)
  const { rows: [{ sealed }] } = await app.pg.query<{ sealed: number }>('SELECT count(*)::int AS sealed FROM audit_seals')
  const res = await app.inject({ method: 'GET', url: `${AUDIT}/verify`, headers: auditor.headers })
  t.equal(res.statusCode, 200)
  const body = res.json()
  t.same(Object.keys(body).sort(), ['checked', 'firstBrokenEventId', 'intact'])
  t.equal(body.intact, true)
  t.equal(body.firstBrokenEventId, null)
  t.ok(sealed > 0 && body.checked >= sealed, 'every event sealed before the call is checked')
})
