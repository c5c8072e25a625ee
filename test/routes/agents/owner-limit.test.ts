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
