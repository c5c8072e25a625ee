import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { agentBody, build } from '../../helper.js'
import { AGENTS, bearer, bootstrap, tokenFor, withDb } from '../../support/oauth-flow.js'

/**
 * MAX_AGENTS_PER_OWNER under concurrency: parallel registrations for one owner, on two instances
 * sharing the database, must stop at exactly the limit.
 */

const LIMIT = 3
const env = { MAX_AGENTS_PER_OWNER: String(LIMIT) }
const a = await build(t, { env })
const b = await build(t, { databaseUrl: a.databaseUrl, env })
const admin = await bootstrap(a.databaseUrl)
const adminToken = await tokenFor(a, admin)

async function create (app: FastifyInstance, owner: string): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url: AGENTS, headers: bearer(adminToken), payload: agentBody({ owner }) })
}

async function agentsOf (owner: string): Promise<number> {
  return await withDb(a.databaseUrl, async (db) =>
    (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM agents WHERE owner = $1', [owner])).rows[0].n)
}

t.test('10 concurrent registrations for one owner create exactly the limit; the rest get FREE_TIER_LIMIT_EXCEEDED', async (t) => {
  const owner = 'team-race'
  const responses = await Promise.all(Array.from({ length: 10 }, () => create(a, owner)))
  const created = responses.filter((res) => res.statusCode === 201)
  const refused = responses.filter((res) => res.statusCode === 403)
  t.equal(created.length, LIMIT, `exactly ${LIMIT} created`)
  t.equal(refused.length, 10 - LIMIT, 'the others refused with 403')
  for (const res of refused) {
    t.match(res.headers['content-type'], /^application\/problem\+json/, 'a problem+json refusal')
    t.match(res.json(), { status: 403, code: 'FREE_TIER_LIMIT_EXCEEDED' }, 'coded FREE_TIER_LIMIT_EXCEEDED')
  }
  t.equal(await agentsOf(owner), LIMIT, 'the database holds exactly the limit')
  const audited = await withDb(a.databaseUrl, async (db) => (await db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM audit_events WHERE action = 'access.denied' AND metadata->>'reason' = 'free_tier_limit'")).rows[0].n)
  t.equal(audited, 10 - LIMIT, 'each refusal is audited')
})

t.test('concurrent registrations for one owner on two instances also stop at the limit', async (t) => {
  const owner = 'team-race-two-instances'
  const responses = await Promise.all(Array.from({ length: 10 }, (_, i) => create(i % 2 === 0 ? a : b, owner)))
  t.equal(responses.filter((res) => res.statusCode === 201).length, LIMIT, `exactly ${LIMIT} created across both instances`)
  t.same(responses.filter((res) => res.statusCode !== 201).map((res) => `${res.statusCode} ${(res.json() as { code: string }).code}`),
    Array(10 - LIMIT).fill('403 FREE_TIER_LIMIT_EXCEEDED'), 'every other one is 403 FREE_TIER_LIMIT_EXCEEDED')
  t.equal(await agentsOf(owner), LIMIT, 'the database holds exactly the limit')
})

t.test('the limit is per owner: another owner can still register', async (t) => {
  const full = 'team-full'
  for (let i = 0; i < LIMIT; i++) t.equal((await create(a, full)).statusCode, 201, `agent ${i + 1} of ${full}`)
  t.equal((await create(b, full)).statusCode, 403, `${full} is at its limit`)
  t.equal((await create(b, 'team-other')).statusCode, 201, 'another owner is not affected')
})

async function move (app: FastifyInstance, agentId: string, owner: string): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'PATCH', url: `${AGENTS}/${agentId}`, headers: bearer(adminToken), payload: { owner } })
}

async function ownerOf (agentId: string): Promise<string> {
  return await withDb(a.databaseUrl, async (db) =>
    (await db.query<{ owner: string }>('SELECT owner FROM agents WHERE agent_id = $1', [agentId])).rows[0].owner)
}

async function limitDenials (): Promise<number> {
  return await withDb(a.databaseUrl, async (db) => (await db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM audit_events WHERE action = 'access.denied' AND metadata->>'reason' = 'free_tier_limit'")).rows[0].n)
}

t.test('moving an agent by PATCH {owner} to an owner at the limit is refused like creation: 403, unchanged, audited', async (t) => {
  const full = 'team-full-by-move'
  for (let i = 0; i < LIMIT; i++) t.equal((await create(a, full)).statusCode, 201)
  const outsider = (await create(a, 'team-outsider')).json().agentId as string
  const denialsBefore = await limitDenials()
  const res = await move(a, outsider, full)
  t.equal(res.statusCode, 403, res.body)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.match(res.json(), { status: 403, code: 'FREE_TIER_LIMIT_EXCEEDED' })
  t.equal(await ownerOf(outsider), 'team-outsider', 'the agent keeps its owner')
  t.equal(await agentsOf(full), LIMIT, 'the full owner still holds exactly the limit')
  t.equal(await limitDenials() - denialsBefore, 1, 'the refusal is audited once')
  t.equal((await move(a, outsider, 'team-with-room')).statusCode, 200, 'an owner with room takes it')
  const member = (await withDb(a.databaseUrl, async (db) => (await db.query<{ agent_id: string }>('SELECT agent_id FROM agents WHERE owner = $1 LIMIT 1', [full])).rows[0].agent_id))
  t.equal((await move(a, member, full)).statusCode, 200, 'an agent already counted for the owner may "move" to it (no change)')
})

t.test('concurrent moves into an owner with one place left, on two instances, fill exactly that place', async (t) => {
  const owner = 'team-one-place'
  for (let i = 0; i < LIMIT - 1; i++) t.equal((await create(a, owner)).statusCode, 201)
  const movers: string[] = []
  for (let i = 0; i < 6; i++) movers.push((await create(a, `team-mover-${i}`)).json().agentId as string)
  const responses = await Promise.all(movers.map((agentId, i) => move(i % 2 === 0 ? a : b, agentId, owner)))
  t.equal(responses.filter((res) => res.statusCode === 200).length, 1, 'exactly one move succeeds')
  t.same(responses.filter((res) => res.statusCode !== 200).map((res) => `${res.statusCode} ${(res.json() as { code: string }).code}`),
    Array(5).fill('403 FREE_TIER_LIMIT_EXCEEDED'))
  t.equal(await agentsOf(owner), LIMIT, 'the owner holds exactly the limit')
})

t.test('a move racing a registration for the last place: exactly one of them gets it', async (t) => {
  const owner = 'team-race-move-create'
  for (let i = 0; i < LIMIT - 1; i++) t.equal((await create(a, owner)).statusCode, 201)
  const mover = (await create(a, 'team-mover-x')).json().agentId as string
  const [moved, created] = await Promise.all([move(a, mover, owner), create(b, owner)])
  const winners = [moved.statusCode === 200, created.statusCode === 201].filter(Boolean).length
  t.equal(winners, 1, `one of them wins (move ${moved.statusCode}, create ${created.statusCode})`)
  t.match((moved.statusCode === 200 ? created : moved).json(), { status: 403, code: 'FREE_TIER_LIMIT_EXCEEDED' }, 'the other is refused')
  t.equal(await agentsOf(owner), LIMIT)
})
