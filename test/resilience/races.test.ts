import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import t, { type Test } from 'tap'
import { agentBody } from '../helper.js'
import { basic, bootstrap } from '../support/oauth-flow.js'
import { ensureBuild, startPrivatePostgres, startPrivateRedis, waitFor } from '../support/private-services.js'
import { migrate } from '../../repositories/migrations.js'
import { generateSecret } from '../../services/secrets.js'
import { recordFigures, spawnServer, type SpawnedServer } from './support.js'
import { addresses, claimsOf, createHttp, registerOverHttp, statusLine, type Answer, type RegisteredClient } from './http.js'

/**
 * Races (issue 11), end to end over real TCP against the compiled server — one instance, and two
 * instances sharing PostgreSQL and Redis — on a private PostgreSQL cluster and a private Redis.
 *
 * 1. A change to a client racing a stream of its token requests while the argon2 queue is busy
 *    (wrong secrets from many addresses keep it full, so a token request waits there for a second
 *    or more after its client was read): suspension, decommissioning, credential revocation,
 *    credential rotation and scope narrowing (PATCH capabilities). The stream is sent from a fresh address every few tens of
 *    milliseconds; the change is made once the first token of the stream has come back, i.e. while
 *    the requests sent in the second before wait in the argon2 queue with the client as it was.
 *    Afterwards every token obtained is judged: introspected, tried on the management API, and
 *    placed before or after the change by PostgreSQL's commit timestamps (track_commit_timestamp:
 *    the `token.issued` row and the change's own audit row commit with what they record). A token
 *    whose issuance committed after the change, or one the change should have killed that is still
 *    usable, is a race lost. (test/routes/oauth/issuance-races.test.ts proves the same in-process
 *    with a held row lock.)
 * 2. Limits under concurrency: TOKEN_MONTHLY_QUOTA, MAX_AGENTS_PER_OWNER (registrations and moves by
 *    PATCH {owner} at once) and RATE_LIMIT_TOKEN_PER_CLIENT, with many concurrent requests, on one
 *    and on two instances: never exceeded, counted both in answers and in rows.
 */

const LOAD_LOOPS = Number(process.env.RESILIENCE_RACE_LOAD ?? 16)
// a victim token request from a fresh address this often: tens of them wait in the argon2 queue at the change
const STREAM_EVERY_MS = 60
const CAPABILITIES = ['docs:read', 'docs:write', 'agents:read']
const REMOVED = 'agents:read'

await ensureBuild()
const postgres = await startPrivatePostgres(t)
const redis = await startPrivateRedis(t)
{
  // commit timestamps: whether an issuance committed before or after the change, to the microsecond
  const db = new pg.Client({ connectionString: postgres.url })
  await db.connect()
  await db.query('ALTER SYSTEM SET track_commit_timestamp = on')
  await db.end()
  await postgres.stop()
  await postgres.start()
}
await migrate(postgres.url)
const adminClient = await bootstrap(postgres.url)
const sql = new pg.Pool({ connectionString: postgres.url, max: 2 })
t.teardown(() => sql.end())

const http = createHttp()
t.teardown(() => http.close())
const nextIp = addresses(1)
const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const JSON_TYPE = { 'content-type': 'application/json' }

/** Everything generous except the limits a subtest is about. */
const NO_LIMITS = {
  REDIS_URL: redis.url,
  TRUST_PROXY: '127.0.0.1',
  RATE_LIMIT_AUTH_FAILURES_PER_IP: '1000000',
  RATE_LIMIT_BEARER_FAILURES_PER_IP: '0',
  RATE_LIMIT_TOKEN_PER_CLIENT: '0',
  TOKEN_MONTHLY_QUOTA: '0',
  MAX_AGENTS_PER_OWNER: '0'
}

async function token (base: string, clientId: string, secret: string, ip = nextIp()): Promise<Answer> {
  return await http.send(base, 'POST', '/api/v1/token', { authorization: basic(clientId, secret), ...FORM, 'x-forwarded-for': ip }, 'grant_type=client_credentials')
}

// quota and owner limit are tested on these too: well above what a race's client uses
const QUOTA = 100
const OWNER_LIMIT = 8
const RACE_ENV = { ...NO_LIMITS, TOKEN_MONTHLY_QUOTA: String(QUOTA), MAX_AGENTS_PER_OWNER: String(OWNER_LIMIT) }
const first = await spawnServer(t, postgres.url, RACE_ENV)
const second = await spawnServer(t, postgres.url, RACE_ENV)
const adminAnswer = await token(first.base, adminClient.clientId, adminClient.clientSecret)
if (adminAnswer.status !== 200) throw new Error(`admin token refused: ${adminAnswer.status} ${adminAnswer.body}`)
// the same signing key and database on every instance: the admin's token works on all of them
const adminBearer = { authorization: `Bearer ${(JSON.parse(adminAnswer.body) as { access_token: string }).access_token}` }

type Victim = RegisteredClient
const newClient = async (base: string, overrides: Record<string, unknown> = {}): Promise<Victim> =>
  await registerOverHttp(http, base, adminBearer, agentBody({ capabilities: CAPABILITIES, owner: `races-${Math.random().toString(36).slice(2, 10)}`, ...overrides }))

/**
 * Keeps every server's argon2 queue full: `loops` loops per server, each from an address of its
 * own (the per-address queue lets one address hold one place of the shared queue), sending wrong
 * secrets for a real credential — each costs a real verification. Resolves once every loop has had
 * an answer, i.e. the queue is in its steady state.
 */
async function busyArgon2 (servers: SpawnedServer[], loops: number): Promise<{ stop: () => Promise<void>, answered: () => number }> {
  const target = await newClient(servers[0].base)
  let running = true
  let answered = 0
  const loop = async (index: number) => {
    const base = servers[index % servers.length].base
    const ip = nextIp()
    while (running) {
      const answer = await token(base, target.agentId, generateSecret(target.credentialId), ip).catch(() => null)
      answered += 1
      if (answer === null || answer.status === 503) await sleep(50)
    }
  }
  const all = Promise.all(Array.from({ length: loops * servers.length }, (_, index) => loop(index)))
  await waitFor('the argon2 queue to fill', () => answered >= loops * servers.length, 120_000, 50)
  return { stop: async () => { running = false; await all }, answered: () => answered }
}

type Kind = 'suspension' | 'decommissioning' | 'revocation' | 'rotation' | 'narrowing'
const CHANGE_ACTION: Record<Kind, string> = {
  suspension: 'agent.suspended', decommissioning: 'agent.decommissioned', revocation: 'credential.revoked', rotation: 'credential.rotated', narrowing: 'agent.updated'
}

interface Attempt { secret: 'old' | 'new', sentAt: number, answer?: Answer, error?: string }
interface RaceResult { kind: Kind, instances: number, tokens: number, refusedAtWrite: number, sentBeforeChange: number, lost: string[] }
const races: RaceResult[] = []
let racesLost = 0

async function changeClient (kind: Kind, base: string, victim: Victim): Promise<{ answer: Answer, newSecret?: string }> {
  const { agentId, credentialId } = victim
  switch (kind) {
    case 'suspension':
      return { answer: await http.send(base, 'PATCH', `/api/v1/agents/${agentId}`, { ...adminBearer, ...JSON_TYPE }, JSON.stringify({ status: 'suspended' })) }
    case 'decommissioning':
      return { answer: await http.send(base, 'DELETE', `/api/v1/agents/${agentId}`, adminBearer) }
    case 'revocation':
      return { answer: await http.send(base, 'DELETE', `/api/v1/agents/${agentId}/credentials/${credentialId}`, adminBearer) }
    case 'rotation': {
      const answer = await http.send(base, 'POST', `/api/v1/agents/${agentId}/credentials/${credentialId}/rotate`, adminBearer)
      return { answer, newSecret: answer.status === 200 ? (JSON.parse(answer.body) as { clientSecret: string }).clientSecret : undefined }
    }
    case 'narrowing':
      return { answer: await http.send(base, 'PATCH', `/api/v1/agents/${agentId}`, { ...adminBearer, ...JSON_TYPE }, JSON.stringify({ capabilities: CAPABILITIES.filter((scope) => scope !== REMOVED) })) }
  }
}

/** When each of the agent's issuances committed (by jti), and when its last `action` event did. */
async function commitTimes (agentId: string, action: string): Promise<{ issued: Map<string, { committed: string, scope: string }>, change: string }> {
  const { rows } = await sql.query<{ jti: string, scope: string, committed: string }>(
    `SELECT metadata->>'jti' AS jti, metadata->>'scope' AS scope, to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS committed
     FROM audit_events WHERE agent_id = $1 AND action = 'token.issued'`, [agentId])
  const { rows: [change] } = await sql.query<{ committed: string }>(
    `SELECT to_char(pg_xact_commit_timestamp(xmin) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS committed
     FROM audit_events WHERE agent_id = $1 AND action = $2 ORDER BY created_at DESC LIMIT 1`, [agentId, action])
  if (change?.committed == null) throw new Error(`no commit timestamp for the ${action} event: is track_commit_timestamp on?`)
  return { issued: new Map(rows.map((row) => [row.jti, { committed: row.committed, scope: row.scope }])), change: change.committed }
}

/** Token requests the write refused because the client changed after it authenticated. */
async function refusedAtWrite (agentId: string): Promise<number> {
  const { rows: [{ n }] } = await sql.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM audit_events WHERE agent_id = $1 AND action IN ('auth.failed', 'access.denied')
       AND metadata->>'reason' IN ('client_changed_during_issuance', 'capabilities_changed_during_issuance')`, [agentId])
  return n
}

async function introspect (base: string, accessToken: string): Promise<{ active: boolean, scope?: string }> {
  const answer = await http.send(base, 'POST', '/api/v1/token/introspect', { ...adminBearer, ...FORM }, new URLSearchParams({ token: accessToken }).toString())
  if (answer.status !== 200) throw new Error(`introspection answered ${answer.status}: ${answer.body}`)
  return JSON.parse(answer.body) as { active: boolean, scope?: string }
}

/**
 * One race: `kind` against a stream of token requests for the same client, spread over `servers`,
 * with every server's argon2 queue busy; the change is sent to the last server.
 */
async function race (t: Test, kind: Kind, servers: SpawnedServer[]): Promise<void> {
  const victim = await newClient(servers[0].base)
  const load = await busyArgon2(servers, LOAD_LOOPS)
  const attempts: Attempt[] = []
  const pending = new Set<Promise<void>>()
  let secret = victim.secret
  let which: Attempt['secret'] = 'old'
  let streaming = true
  const stream = (async () => {
    for (let n = 0; streaming; n += 1) {
      const attempt: Attempt = { secret: which, sentAt: performance.now() }
      attempts.push(attempt)
      const sending = token(servers[n % servers.length].base, victim.agentId, secret)
        .then((answer) => { attempt.answer = answer }, (error: Error) => { attempt.error = error.message })
        .finally(() => { pending.delete(sending) })
      pending.add(sending)
      await sleep(STREAM_EVERY_MS)
    }
  })()

  // the first token out means the victim's secret went through the queue: those sent since wait there
  await waitFor('the first token of the stream', () => attempts.some((attempt) => attempt.answer?.status === 200), 120_000, 10)
  const changeSentAt = performance.now()
  const sentBeforeChange = attempts.filter((attempt) => attempt.answer === undefined && attempt.error === undefined).length
  const { answer: changed, newSecret } = await changeClient(kind, servers[servers.length - 1].base, victim)
  const changeAnsweredAt = performance.now()
  t.ok(changed.status === 200 || changed.status === 204, `the ${kind} answered ${changed.status}`, { body: changed.body })
  // a few more of the old kind after the answer, then (rotation) the new secret
  const afterChange = () => attempts.filter((attempt) => attempt.sentAt > changeAnsweredAt).length
  await waitFor('requests after the change', () => afterChange() >= 10, 60_000, 10)
  if (newSecret !== undefined) {
    secret = newSecret
    which = 'new'
    await waitFor('new-secret requests', () => afterChange() >= 20, 60_000, 10)
  }
  streaming = false
  await stream
  // the requests still queued keep the client as they read it: the load can go
  await Promise.all([...pending, load.stop()])

  const lost: string[] = []
  const answered = attempts.filter((attempt) => attempt.answer !== undefined)
  const noAnswer = attempts.filter((attempt) => attempt.error !== undefined)
  t.same(noAnswer.map((attempt) => attempt.error), [], 'every token request was answered')
  const { issued, change } = await commitTimes(victim.agentId, CHANGE_ACTION[kind])
  const obtained = answered.filter((attempt) => attempt.answer?.status === 200)
  // reactivation must not revive a token issued before the suspension (nor one slipped in after it)
  const base = servers[0].base
  for (const attempt of obtained) {
    const accessToken = (JSON.parse(attempt.answer?.body as string) as { access_token: string }).access_token
    const claims = claimsOf(accessToken)
    const jti = claims.jti as string
    const scopes = String(claims.scope).split(' ')
    const row = issued.get(jti)
    const label = `${attempt.secret}-secret token ${jti.slice(-8)} (sent ${Math.round(attempt.sentAt - changeSentAt)} ms from the change)`
    if (row === undefined) { lost.push(`${label}: answered 200 without its token.issued event`); continue }
    const issuedAfter = row.committed > change
    const state = await introspect(servers[servers.length - 1].base, accessToken)
    const self = await http.send(base, 'GET', `/api/v1/agents/${victim.agentId}`, { authorization: `Bearer ${accessToken}` })
    const sentAfterAnswer = attempt.sentAt > changeAnsweredAt
    switch (kind) {
      case 'suspension':
      case 'decommissioning':
      case 'revocation':
        if (issuedAfter) lost.push(`${label}: issued ${row.committed}, after the ${kind} committed ${change}`)
        if (state.active) lost.push(`${label}: introspection says active after the ${kind}`)
        if (self.status !== 401) lost.push(`${label}: the management API answered ${self.status} after the ${kind}`)
        break
      case 'rotation':
        if (attempt.secret === 'new') {
          if (!state.active || self.status !== 200) lost.push(`${label}: the new secret's token is not usable (active ${state.active}, ${self.status})`)
        } else if (issuedAfter || sentAfterAnswer) {
          lost.push(`${label}: an old-secret token issued ${row.committed}, after the rotation committed ${change}`)
        } else if (!state.active || self.status !== 200) {
          // API.md: a rotation leaves the tokens already issued valid until they expire
          lost.push(`${label}: issued before the rotation, yet no longer usable (active ${state.active}, ${self.status})`)
        }
        break
      case 'narrowing': {
        if (scopes.includes(REMOVED) && (issuedAfter || sentAfterAnswer)) lost.push(`${label}: carries ${REMOVED}, issued ${row.committed}, after the narrowing committed ${change}`)
        if (state.scope?.split(' ').includes(REMOVED) === true) lost.push(`${label}: introspection still reports ${REMOVED}`)
        const list = await http.send(base, 'GET', '/api/v1/agents?limit=1', { authorization: `Bearer ${accessToken}` })
        if (list.status !== 403) lost.push(`${label}: GET /agents (needs ${REMOVED}) answered ${list.status} after the narrowing`)
        if (!state.active || self.status !== 200) lost.push(`${label}: narrowing killed the token (active ${state.active}, ${self.status})`)
        break
      }
    }
  }
  if (kind === 'suspension') {
    const reactivated = await http.send(base, 'PATCH', `/api/v1/agents/${victim.agentId}`, { ...adminBearer, ...JSON_TYPE }, JSON.stringify({ status: 'active' }))
    t.equal(reactivated.status, 200, 'reactivated')
    for (const attempt of obtained) {
      const accessToken = (JSON.parse(attempt.answer?.body as string) as { access_token: string }).access_token
      if ((await introspect(base, accessToken)).active) lost.push(`token ${claimsOf(accessToken).jti as string}: alive again after reactivation`)
    }
  }
  const byStatus = new Map<string, number>()
  for (const attempt of answered) byStatus.set(String(attempt.answer?.status), (byStatus.get(String(attempt.answer?.status)) ?? 0) + 1)
  const unexpected = answered.filter((attempt) => ![200, 400, 401].includes(attempt.answer?.status as number))
  t.same(unexpected.map((attempt) => `${attempt.answer?.status} ${attempt.answer?.body.slice(0, 200)}`), [], 'every answer is a token or a refusal')
  const atWrite = await refusedAtWrite(victim.agentId)
  t.comment(`${kind}, ${servers.length} instance(s): ${attempts.length} requests (${statusLine(byStatus)}), ${sentBeforeChange} waiting at the change, ` +
    `${obtained.length} tokens, ${atWrite} refused at the issuance write, load ${load.answered()} wrong secrets`)
  // otherwise the stream never raced the change and the verdict would prove nothing
  t.ok(atWrite > 0, `the race was run: ${atWrite} requests that read the client before the ${kind} reached the issuance write after it`)
  t.same(lost, [], `no token outlives or postdates the ${kind}`)
  racesLost += lost.length
  races.push({ kind, instances: servers.length, tokens: obtained.length, refusedAtWrite: atWrite, sentBeforeChange, lost })
}

const KINDS: Kind[] = ['suspension', 'decommissioning', 'revocation', 'rotation', 'narrowing']

t.test('one instance: each change races a token stream through a busy argon2 queue', async (t) => {
  for (const kind of KINDS) await t.test(kind, (t) => race(t, kind, [first]))
})

t.test('two instances: the stream spread over both, the change on the other', async (t) => {
  for (const kind of KINDS) await t.test(kind, (t) => race(t, kind, [first, second]))
})

// ---------------------------------------------------------------------------------------------
// limits under concurrency

const RATE = 20
const limitVerdicts: Record<string, string> = {}

/** `count` requests at once, spread over the servers in turn. */
async function burst (count: number, send: (n: number) => Promise<Answer>): Promise<Answer[]> {
  return await Promise.all(Array.from({ length: count }, (_, n) => send(n)))
}

const tally = (answers: Answer[]) => {
  const statuses = new Map<string, number>()
  for (const answer of answers) statuses.set(String(answer.status), (statuses.get(String(answer.status)) ?? 0) + 1)
  return statuses
}

async function quotaUnderConcurrency (t: Test, servers: SpawnedServer[]): Promise<string> {
  const agents = await Promise.all([0, 1, 2].map(() => newClient(servers[0].base)))
  // remembered on every instance first (one token each, counted): the burst then costs no argon2
  for (const server of servers) for (const agent of agents) t.equal((await token(server.base, agent.agentId, agent.secret)).status, 200)
  const per = 3 * QUOTA
  const answers = await burst(per * agents.length, (n) => token(servers[n % servers.length].base, agents[n % agents.length].agentId, agents[n % agents.length].secret))
  const parts: string[] = []
  for (const [index, agent] of agents.entries()) {
    const mine = answers.filter((_, n) => n % agents.length === index)
    const issued = mine.filter((answer) => answer.status === 200).length + servers.length
    const refused = mine.filter((answer) => answer.status === 429 && answer.body.includes('quota_exceeded')).length
    const { rows: [counted] } = await sql.query<{ count: number }>('SELECT coalesce(sum(count), 0)::int AS count FROM token_monthly_counts WHERE agent_id = $1', [agent.agentId])
    const { rows: [events] } = await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_events WHERE agent_id = $1 AND action = 'token.issued'", [agent.agentId])
    t.ok(issued <= QUOTA, `agent ${index}: ${issued} tokens issued of a quota of ${QUOTA}`)
    t.equal(issued + refused, per + servers.length, 'every other request refused with quota_exceeded')
    t.ok(counted.count <= QUOTA, `the counter says ${counted.count} (≤ ${QUOTA})`)
    t.equal(events.n, issued, 'one token.issued event per token answered')
    t.equal(counted.count, issued, 'the counter matches the tokens answered')
    if (issued > QUOTA || counted.count > QUOTA || events.n !== issued) racesLost += 1
    parts.push(String(issued))
  }
  t.same(answers.filter((answer) => ![200, 429].includes(answer.status)).map((answer) => `${answer.status} ${answer.body}`), [], 'only tokens and 429s')
  return `${parts.join('/')} tokens of ${QUOTA} for 3 agents × ${per + servers.length} requests (${statusLine(tally(answers))})`
}

async function ownerLimitUnderConcurrency (t: Test, servers: SpawnedServer[]): Promise<string> {
  const owner = `races-owner-${Math.random().toString(36).slice(2, 10)}`
  // agents of other owners, to be moved to `owner` by PATCH while registrations for it run
  const movers = await Promise.all(Array.from({ length: OWNER_LIMIT }, (_, n) => newClient(servers[0].base, { owner: `${owner}-elsewhere-${n}` })))
  const creations = 2 * OWNER_LIMIT
  const answers = await burst(creations + movers.length, (n) => {
    const base = servers[n % servers.length].base
    return n < creations
      ? http.send(base, 'POST', '/api/v1/agents', { ...adminBearer, ...JSON_TYPE }, JSON.stringify(agentBody({ owner })))
      : http.send(base, 'PATCH', `/api/v1/agents/${movers[n - creations].agentId}`, { ...adminBearer, ...JSON_TYPE }, JSON.stringify({ owner }))
  })
  const created = answers.slice(0, creations).filter((answer) => answer.status === 201).length
  const moved = answers.slice(creations).filter((answer) => answer.status === 200).length
  const refused = answers.filter((answer) => answer.status === 403 && answer.body.includes('FREE_TIER_LIMIT_EXCEEDED')).length
  const { rows: [{ n }] } = await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM agents WHERE owner = $1 AND status <> 'decommissioned'", [owner])
  t.ok(created + moved <= OWNER_LIMIT, `${created} registered + ${moved} moved ≤ ${OWNER_LIMIT}`)
  t.equal(n, created + moved, `the owner has ${n} agents: exactly the successes`)
  t.equal(created + moved + refused, answers.length, 'every other request refused with FREE_TIER_LIMIT_EXCEEDED')
  if (n > OWNER_LIMIT || n !== created + moved) racesLost += 1
  return `${n} agents of ${OWNER_LIMIT} (${created} registered, ${moved} moved by PATCH) from ${answers.length} concurrent requests (${statusLine(tally(answers))})`
}

async function rateLimitUnderConcurrency (t: Test, servers: SpawnedServer[]): Promise<string> {
  const client = await newClient(servers[0].base)
  const started = Date.now()
  // the first request of each instance makes it remember the secret (and counts in the window)
  const warm = await Promise.all(servers.map((server) => token(server.base, client.agentId, client.secret)))
  const answers = [...warm, ...await burst(5 * RATE, (n) => token(servers[n % servers.length].base, client.agentId, client.secret))]
  const span = Date.now() - started
  // a window opens at the first request and lasts 60 s: all of them fell in one unless this took longer
  const windows = 1 + Math.floor(span / 60_000)
  const ok = answers.filter((answer) => answer.status === 200).length
  const limited = answers.filter((answer) => answer.status === 429 && answer.body.includes('rate_limited') && answer.headers['retry-after'] !== undefined).length
  t.ok(ok <= RATE * windows, `${ok} tokens of ${answers.length} requests in ${span} ms (≤ ${RATE} per window, ${windows} window(s))`)
  t.equal(ok + limited, answers.length, 'the others answered 429 rate_limited with Retry-After')
  if (ok > RATE * windows) racesLost += 1
  // the first refusal from an address is written in full on each instance, the rest counted for a summary
  const { rows: [{ n: rows }] } = await sql.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_events WHERE agent_id = $1 AND action = 'access.denied'", [client.agentId])
  t.ok(rows <= servers.length, `${rows} audit rows for ${limited} refusals (≤ 1 per instance until the summaries)`)
  return `${ok} tokens of ${answers.length} concurrent requests (limit ${RATE}/min, ${windows} window), ${rows} audit rows for ${limited} × 429`
}

t.test(`limits under concurrency: quota ${QUOTA}, ${OWNER_LIMIT} agents per owner`, async (t) => {
  for (const servers of [[first], [first, second]]) {
    await t.test(`${servers.length} instance(s)`, async (t) => {
      limitVerdicts[`quota, ${servers.length} inst.`] = await quotaUnderConcurrency(t, servers)
      limitVerdicts[`owner limit, ${servers.length} inst.`] = await ownerLimitUnderConcurrency(t, servers)
    })
  }
})

t.test(`limits under concurrency: ${RATE} token requests per client per minute`, async (t) => {
  // a limit of its own: the races' clients send more than that
  const limited = [await spawnServer(t, postgres.url, { ...NO_LIMITS, RATE_LIMIT_TOKEN_PER_CLIENT: String(RATE) })]
  limited.push(await spawnServer(t, postgres.url, { ...NO_LIMITS, RATE_LIMIT_TOKEN_PER_CLIENT: String(RATE) }))
  for (const servers of [limited.slice(0, 1), limited]) {
    await t.test(`${servers.length} instance(s)`, async (t) => {
      limitVerdicts[`token rate, ${servers.length} inst.`] = await rateLimitUnderConcurrency(t, servers)
    })
  }
})

t.teardown(() => {
  const verdicts: Record<string, string> = {}
  for (const result of races) {
    verdicts[`${result.kind}, ${result.instances} inst.`] = `${result.lost.length === 0 ? 'ok' : `LOST ${result.lost.length}`}: ${result.tokens} tokens, ` +
      `${result.sentBeforeChange} waiting in the argon2 queue at the change, ${result.refusedAtWrite} refused at the issuance write`
  }
  Object.assign(verdicts, limitVerdicts)
  recordFigures({
    part: 'races',
    inputsTried: http.sent,
    serverErrors: http.serverErrors.length,
    racesLost,
    verdicts
  })
})
