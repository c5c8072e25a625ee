import { randomUUID } from 'node:crypto'
import t from 'tap'
import { agentBody, build, RESOURCE_METADATA, seedAdmin, seedAgent } from '../../helper.js'
import { insertAgent } from '../../../repositories/agents.js'
import { AGENTS, assertProblem, assertValidationError, auditByActor, type Tap } from './support.js'

const app = await build(t)
const admin = await seedAdmin(app)

interface Listed { agentId: string, createdAt: string, status: string, owner: string, deploymentEnv: string, agentType: string }
interface Page { data: Listed[], nextCursor: string | null }

/** Registers `count` agents under a fresh owner, oldest first. */
async function seedOwner (count: number, overrides: (index: number) => Record<string, unknown> = () => ({})) {
  const owner = `owner-${randomUUID().slice(0, 8)}`
  const ids: string[] = []
  for (let index = 0; index < count; index++) {
    ids.push((await insertAgent(app.pg, agentBody({ owner, ...overrides(index) }) as never)).agentId)
  }
  return { owner, ids }
}

async function setStatus (agentId: string, status: string): Promise<void> {
  await app.pg.query('UPDATE agents SET status = $2 WHERE agent_id = $1', [agentId, status])
}

async function list (t: Tap, query: Record<string, string | number>): Promise<Page> {
  const res = await app.inject({ method: 'GET', url: AGENTS, headers: admin.headers, query: Object.fromEntries(Object.entries(query).map(([key, value]) => [key, String(value)])) })
  t.equal(res.statusCode, 200, res.body)
  return res.json() as Page
}

/** Follows nextCursor to the end; returns the pages. */
async function walk (t: Tap, query: Record<string, string | number>): Promise<Page[]> {
  const pages: Page[] = []
  let cursor: string | null = null
  do {
    const page: Page = await list(t, cursor === null ? query : { ...query, cursor })
    pages.push(page)
    cursor = page.nextCursor
  } while (cursor !== null && pages.length < 50)
  return pages
}

t.test('the list answers {data, nextCursor} with Agent objects', async (t) => {
  const { owner, ids } = await seedOwner(1)
  const page = await list(t, { owner })
  t.same(Object.keys(page).sort(), ['data', 'nextCursor'])
  t.equal(page.nextCursor, null)
  t.equal(page.data.length, 1)
  t.match(page.data[0], { agentId: ids[0], owner, status: 'active' })
  t.same(Object.keys(page.data[0]).sort(), ['agentId', 'agentType', 'audiences', 'authMethods', 'capabilities', 'clientIdUrl', 'createdAt', 'deploymentEnv', 'dpopBound', 'email', 'federatedSubjects', 'mayAct', 'owner', 'status', 'updatedAt', 'version'])
})

t.test('agents come newest first', async (t) => {
  const { owner, ids } = await seedOwner(5)
  const page = await list(t, { owner })
  t.same(page.data.map((agent) => agent.agentId), [...ids].reverse())
  const times = page.data.map((agent) => Date.parse(agent.createdAt))
  t.ok(times.every((time, index) => index === 0 || time <= times[index - 1]), 'createdAt never increases')
})

t.test('the limit defaults to 20', async (t) => {
  const { owner, ids } = await seedOwner(21)
  const page = await list(t, { owner })
  t.equal(page.data.length, 20)
  t.type(page.nextCursor, 'string', 'a 21st agent means another page')
  t.same(page.data.map((agent) => agent.agentId), [...ids].reverse().slice(0, 20))
})

t.test('limit 1 and limit 100 are accepted and respected', async (t) => {
  const { owner } = await seedOwner(3)
  const one = await list(t, { owner, limit: 1 })
  t.equal(one.data.length, 1)
  t.type(one.nextCursor, 'string')
  const hundred = await list(t, { owner, limit: 100 })
  t.equal(hundred.data.length, 3)
  t.equal(hundred.nextCursor, null)
})

// 1e309 and Infinity: Ajv coerces them to Infinity, which it calls an integer within range (was a 500)
for (const limit of ['0', '101', '-1', '1.5', 'abc', '', '1e309', 'Infinity', '-Infinity']) {
  t.test(`limit=${JSON.stringify(limit)} is a 400 VALIDATION_ERROR`, async (t) => {
    const res = await app.inject({ method: 'GET', url: `${AGENTS}?limit=${limit}`, headers: admin.headers })
    assertValidationError(t, res, /limit/)
  })
}

t.test('cursor pagination returns every agent exactly once, in order, and nextCursor is null at the end', async (t) => {
  const { owner, ids } = await seedOwner(7)
  const pages = await walk(t, { owner, limit: 3 })
  t.same(pages.map((page) => page.data.length), [3, 3, 1])
  t.equal(pages[pages.length - 1].nextCursor, null)
  t.ok(pages.slice(0, -1).every((page) => typeof page.nextCursor === 'string'), 'every earlier page has a cursor')
  const seen = pages.flatMap((page) => page.data.map((agent) => agent.agentId))
  t.same(seen, [...ids].reverse(), 'each agent once, newest first')
})

t.test('when the last page is exactly full nextCursor is null (no empty trailing page)', async (t) => {
  const { owner, ids } = await seedOwner(6)
  const pages = await walk(t, { owner, limit: 3 })
  t.same(pages.map((page) => page.data.length), [3, 3])
  t.equal(pages[1].nextCursor, null)
  t.same(pages.flatMap((page) => page.data.map((agent) => agent.agentId)), [...ids].reverse())
})

t.test('an agent registered between two pages neither repeats nor shifts the walk', async (t) => {
  const { owner, ids } = await seedOwner(4)
  const first = await list(t, { owner, limit: 2 })
  const late = (await insertAgent(app.pg, agentBody({ owner }) as never)).agentId
  const second = await list(t, { owner, limit: 2, cursor: first.nextCursor as string })
  const seen = [...first.data, ...second.data].map((agent) => agent.agentId)
  t.same(seen, [...ids].reverse())
  t.notOk(seen.includes(late))
  t.equal(second.nextCursor, null)
})

t.test('the whole registry pages through without duplicates or gaps', async (t) => {
  await seedOwner(5)
  const { rows } = await app.pg.query<{ agent_id: string }>('SELECT agent_id FROM agents')
  const pages = await walk(t, { limit: 7 })
  const seen = pages.flatMap((page) => page.data.map((agent) => agent.agentId))
  t.equal(new Set(seen).size, seen.length, 'no agent twice')
  t.same([...seen].sort(), rows.map((row) => row.agent_id).sort(), 'every agent once')
})

t.test('status filter returns only agents with that status', async (t) => {
  const { owner, ids } = await seedOwner(4)
  await setStatus(ids[1], 'suspended')
  await setStatus(ids[2], 'decommissioned')
  t.same((await list(t, { owner, status: 'suspended' })).data.map((agent) => agent.agentId), [ids[1]])
  t.same((await list(t, { owner, status: 'decommissioned' })).data.map((agent) => agent.agentId), [ids[2]])
  t.same((await list(t, { owner, status: 'active' })).data.map((agent) => agent.agentId), [ids[3], ids[0]])
  const all = await list(t, { status: 'suspended', limit: 100 })
  t.ok(all.data.length > 0 && all.data.every((agent) => agent.status === 'suspended'), 'unscoped: only suspended agents')
})

t.test('deploymentEnv filter returns only agents of that environment', async (t) => {
  const envs = ['development', 'staging', 'production', 'production']
  const { owner, ids } = await seedOwner(4, (index) => ({ deploymentEnv: envs[index] }))
  t.same((await list(t, { owner, deploymentEnv: 'production' })).data.map((agent) => agent.agentId), [ids[3], ids[2]])
  t.same((await list(t, { owner, deploymentEnv: 'development' })).data.map((agent) => agent.agentId), [ids[0]])
  const all = await list(t, { deploymentEnv: 'staging', limit: 100 })
  t.ok(all.data.length > 0 && all.data.every((agent) => agent.deploymentEnv === 'staging'))
})

t.test('agentType filter returns only agents of that type', async (t) => {
  const types = ['router', 'monitor', 'router']
  const { owner, ids } = await seedOwner(3, (index) => ({ agentType: types[index] }))
  t.same((await list(t, { owner, agentType: 'router' })).data.map((agent) => agent.agentId), [ids[2], ids[0]])
  t.same((await list(t, { owner, agentType: 'screener' })).data, [])
  const all = await list(t, { agentType: 'monitor', limit: 100 })
  t.ok(all.data.length > 0 && all.data.every((agent) => agent.agentType === 'monitor'))
})

t.test('owner filter matches the whole label exactly, not a prefix', async (t) => {
  const { owner, ids } = await seedOwner(2)
  await insertAgent(app.pg, agentBody({ owner: `${owner}-extended` }) as never)
  const page = await list(t, { owner })
  t.same(page.data.map((agent) => agent.agentId), [ids[1], ids[0]])
  t.same((await list(t, { owner: owner.slice(0, -1) })).data, [], 'a prefix matches nothing')
})

t.test('filters combine (AND) and the cursor keeps them', async (t) => {
  const { owner, ids } = await seedOwner(6, (index) => ({ deploymentEnv: index % 2 === 0 ? 'production' : 'staging' }))
  const pages = await walk(t, { owner, deploymentEnv: 'production', status: 'active', limit: 2 })
  t.same(pages.flatMap((page) => page.data.map((agent) => agent.agentId)), [ids[4], ids[2], ids[0]])
})

for (const [label, cursor] of [
  ['not base64 JSON', 'garbage'],
  ['characters outside base64url', 'abc!def'],
  ['base64url of an object', Buffer.from('{}').toString('base64url')],
  ['a keyset with a malformed id', Buffer.from(JSON.stringify(['2024-01-01T00:00:00.000000Z', 'not-a-uuid'])).toString('base64url')],
  ['a keyset with an impossible date', Buffer.from(JSON.stringify(['2024-13-45T99:99:99.000000Z', randomUUID()])).toString('base64url')],
  ['a keyset with February 30', Buffer.from(JSON.stringify(['2024-02-30T10:00:00.000000Z', randomUUID()])).toString('base64url')],
  ['a keyset with year zero', Buffer.from(JSON.stringify(['0000-01-01T00:00:00Z', randomUUID()])).toString('base64url')],
  ['over 512 characters', 'a'.repeat(513)]
] as const) {
  t.test(`a bad cursor (${label}) is a 400 VALIDATION_ERROR`, async (t) => {
    const res = await app.inject({ method: 'GET', url: AGENTS, query: { cursor }, headers: admin.headers })
    assertValidationError(t, res, /cursor/)
  })
}

t.test('bad filter values are 400 VALIDATION_ERROR naming the parameter', async (t) => {
  for (const [name, value] of [['status', 'deleted'], ['deploymentEnv', 'prod'], ['agentType', 'robot'], ['owner', '']]) {
    const res = await app.inject({ method: 'GET', url: AGENTS, query: { [name]: value }, headers: admin.headers })
    assertValidationError(t, res, new RegExp(`querystring\\.${name}|${name}`))
  }
})

t.test('without a token the list is a 401 with a bare Bearer challenge', async (t) => {
  const res = await app.inject({ method: 'GET', url: AGENTS })
  assertProblem(t, res, 401, 'UNAUTHORIZED')
  t.equal(res.headers['www-authenticate'], `Bearer resource_metadata="${RESOURCE_METADATA}"`)
})

t.test('listing without agents:read is a 403 insufficient_scope, audited as access.denied', async (t) => {
  const writer = await seedAgent(app, { capabilities: ['agents:write', 'docs:read'] })
  const res = await app.inject({ method: 'GET', url: AGENTS, headers: writer.headers })
  assertProblem(t, res, 403, 'FORBIDDEN')
  t.match(res.headers['www-authenticate'], /^Bearer .*error="insufficient_scope"/)
  t.notOk('data' in res.json(), 'no agents leak in the refusal')
  const denied = (await auditByActor(app, writer.agent.agentId)).filter((event) => event.action === 'access.denied')
  t.equal(denied.length, 1)
  t.match(denied[0], { outcome: 'failure', metadata: { actorId: writer.agent.agentId } })
})
