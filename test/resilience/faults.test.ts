import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import t, { type Test } from 'tap'
import { agentBody } from '../helper.js'
import { basic, bootstrap } from '../support/oauth-flow.js'
import { ensureBuild, isAlive, startPrivatePostgres, startPrivateRedis, waitFor } from '../support/private-services.js'
import { migrate } from '../../repositories/migrations.js'
import { auditedActions, FORM_TYPE, httpClient, JSON_TYPE, recordFigures, spawnServer, type Answer } from './support.js'

/**
 * Faults under write traffic (issue 11), against the compiled server on a private PostgreSQL and a
 * private Redis (the shared ones are never touched): PostgreSQL stopped and started, Redis stopped
 * and started, and `pg_terminate_backend` of backends caught `idle in transaction` in the middle
 * of the server's PATCH transactions. Throughout: the same process lives (no restart), every answer
 * is a success or a documented 503 (never a 500, never a dropped connection), writes succeed again
 * once the dependency is back, and every success has exactly one audit event of its action — each
 * request carries a unique User-Agent, which the audit row records, so the match is exact.
 */

await ensureBuild()
const postgres = await startPrivatePostgres(t)
const redis = await startPrivateRedis(t)
await migrate(postgres.url)
const admin = await bootstrap(postgres.url)
const { base, pid, server } = await spawnServer(t, postgres.url, {
  REDIS_URL: redis.url, RATE_LIMIT_TOKEN_PER_CLIENT: '0', RATE_LIMIT_AUTH_FAILURES_PER_IP: '0', TOKEN_MONTHLY_QUOTA: '0', MAX_AGENTS_PER_OWNER: '0'
})

const { send } = httpClient(t, base)

const FORM = FORM_TYPE
const tokenResponse = await send('POST', '/api/v1/token', { authorization: basic(admin.clientId, admin.clientSecret), ...FORM }, 'grant_type=client_credentials')
const adminBearer = { authorization: `Bearer ${(JSON.parse(tokenResponse.body) as { access_token: string }).access_token}` }

interface Writer { agentId: string, secret: string }
/** An agent with a credential for one writer loop; retried, since it may be made while a fault is on. */
async function newWriter (): Promise<Writer> {
  let writer: Writer | undefined
  await waitFor('a writer agent', async () => {
    const created = await send('POST', '/api/v1/agents', { ...adminBearer, ...JSON_TYPE }, JSON.stringify(agentBody({ capabilities: ['docs:read'] })))
    if (created.status !== 201) return false
    const agentId = (JSON.parse(created.body) as { agentId: string }).agentId
    const credential = await send('POST', `/api/v1/agents/${agentId}/credentials`, adminBearer)
    if (credential.status !== 201) return false
    writer = { agentId, secret: (JSON.parse(credential.body) as { clientSecret: string }).clientSecret }
    return true
  }, 20_000, 50)
  return writer as Writer
}

/** Every request of the file: its User-Agent (unique), the audit action a success must have written, its answer. */
interface Sent { userAgent: string, action: string, status: number, error?: string, body?: string, at: number }
const sent: Sent[] = []
let sequence = 0
let faultsSurvived = 0

type Write = (writer: Writer, userAgent: string) => Promise<Answer>
const WRITES: Array<{ action: string, write: Write }> = [
  { action: 'agent.updated', write: (writer, userAgent) => send('PATCH', `/api/v1/agents/${writer.agentId}`, { ...adminBearer, ...JSON_TYPE, 'user-agent': userAgent }, JSON.stringify({ version: `1.0.${sequence}` })) },
  { action: 'token.issued', write: (writer, userAgent) => send('POST', '/api/v1/token', { authorization: basic(writer.agentId, writer.secret), ...FORM, 'user-agent': userAgent }, 'grant_type=client_credentials') },
  { action: 'agent.created', write: (_writer, userAgent) => send('POST', '/api/v1/agents', { ...adminBearer, ...JSON_TYPE, 'user-agent': userAgent }, JSON.stringify(agentBody({ capabilities: ['docs:read'], owner: 'faults' }))) }
]

/** `loops` concurrent writers, each doing `writes` in turn, until `stop()`; resolves once all are writing. */
async function traffic (scenario: string, loops: number, writes: typeof WRITES): Promise<{ stop: () => Promise<void> }> {
  let running = true
  const started = Date.now()
  const writers = await Promise.all(Array.from({ length: loops }, () => newWriter()))
  const run = async (loop: number) => {
    const writer = writers[loop]
    for (let turn = 0; running; turn += 1) {
      const { action, write } = writes[turn % writes.length]
      sequence += 1
      const userAgent = `faults/${scenario}/${loop}/${sequence}`
      const entry: Sent = { userAgent, action, status: 0, at: Date.now() - started }
      sent.push(entry)
      try {
        const answer = await write(writer, userAgent)
        entry.status = answer.status
        if (![200, 201, 503].includes(answer.status)) entry.body = answer.body.slice(0, 300)
      } catch (error) {
        entry.error = (error as Error).message
        await sleep(50)
      }
      // a 503 comes back at once: a short pause keeps the loop from spinning through the outage
      if (entry.status === 503) await sleep(20)
    }
  }
  const all = Promise.all(writers.map((_, loop) => run(loop)))
  return { stop: async () => { running = false; await all } }
}

async function until (what: string, probe: () => boolean, timeoutMs = 20_000): Promise<void> {
  await waitFor(what, probe, timeoutMs, 20)
}

let racesLost = 0
/** Every answer a success or a 503, every success with exactly its one audit event. */
async function judge (t: Test, scenario: string): Promise<void> {
  const mine = sent.filter((entry) => entry.userAgent.startsWith(`faults/${scenario}/`))
  const byStatus = new Map<string, number>()
  for (const entry of mine) byStatus.set(String(entry.error === undefined ? entry.status : 'no answer'), (byStatus.get(String(entry.error === undefined ? entry.status : 'no answer')) ?? 0) + 1)
  t.comment(`${scenario}: ${mine.length} writes, ${[...byStatus].map(([status, count]) => `${status}×${count}`).join(' ')}`)
  const wrong = mine.filter((entry) => entry.error !== undefined || ![200, 201, 503].includes(entry.status))
  t.same(wrong.map((entry) => `${entry.userAgent} ${entry.action}: ${entry.error ?? `${entry.status} ${entry.body}`}`).slice(0, 10), [], 'every answer is a success or a documented 503, none lost')

  // events are written in the request's own transaction: by the time a 2xx is sent, its row is committed
  const audited = await auditedActions(postgres.url, 'faults/')
  const successes = mine.filter((entry) => entry.status === 200 || entry.status === 201)
  const missing = successes.filter((entry) => !(audited.get(entry.userAgent) ?? []).includes(entry.action))
  const doubled = mine.filter((entry) => (audited.get(entry.userAgent) ?? []).filter((action) => action === entry.action).length > 1)
  const committedBut503 = mine.filter((entry) => entry.status === 503 && (audited.get(entry.userAgent) ?? []).includes(entry.action))
  racesLost += missing.length + doubled.length
  t.same(missing.map((entry) => `${entry.userAgent} ${entry.action} ${entry.status}`).slice(0, 10), [], `each of the ${successes.length} successes has its audit event`)
  t.same(doubled.map((entry) => entry.userAgent).slice(0, 10), [], 'no request wrote its event twice')
  if (committedBut503.length > 0) t.comment(`${committedBut503.length} writes answered 503 were committed all the same (the client was told to retry): ${committedBut503.slice(0, 3).map((entry) => entry.userAgent).join(', ')}`)

  t.equal(server.child.exitCode, null, 'the server process is still running')
  t.ok(isAlive(pid), `the same process (pid ${pid}) serves: no restart`)
  await waitFor('/health to be 200 again', async () => (await send('GET', '/health', {})).status === 200, 20_000, 100)
  t.pass('/health is 200 again')
}

t.test('PostgreSQL stopped and started under mixed writes', async (t) => {
  const run = await traffic('pg-restart', 4, WRITES)
  await until('successes before the fault', () => sent.filter((entry) => entry.userAgent.startsWith('faults/pg-restart/') && entry.status < 300 && entry.status > 0).length >= 20)
  await postgres.stop()
  const stoppedAt = sent.length
  await until('503s during the outage', () => sent.slice(stoppedAt).filter((entry) => entry.status === 503).length >= 10)
  await postgres.start()
  const startedAt = Date.now()
  const restartedAt = sent.length
  await until('writes succeeding again', () => sent.slice(restartedAt).filter((entry) => entry.status >= 200 && entry.status < 300).length >= 20, 30_000)
  const recoveryMs = Date.now() - startedAt
  await run.stop()
  t.comment(`writes succeeded again ${recoveryMs} ms after PostgreSQL was back`)
  t.ok(recoveryMs < 20_000, `recovered within 20 s (${recoveryMs} ms)`)
  await judge(t, 'pg-restart')
  faultsSurvived += 1
})

t.test('Redis stopped and started under mixed writes', async (t) => {
  const run = await traffic('redis-restart', 4, WRITES)
  await until('successes before the fault', () => sent.filter((entry) => entry.userAgent.startsWith('faults/redis-restart/') && entry.status < 300 && entry.status > 0).length >= 20)
  await redis.stop()
  // Redis is not on every write's path: let each kind run a while without it
  const stoppedAt = sent.length
  await until('writes during the outage', () => sent.slice(stoppedAt).filter((entry) => entry.status > 0).length >= 30)
  await redis.start()
  const restartedAt = sent.length
  await until('writes succeeding again', () => sent.slice(restartedAt).filter((entry) => entry.status >= 200 && entry.status < 300).length >= 20, 30_000)
  await run.stop()
  await judge(t, 'redis-restart')
  faultsSurvived += 1
})

t.test('backends killed while idle in transaction, during a PATCH loop', async (t) => {
  const run = await traffic('idle-kill', 4, WRITES.slice(0, 1))
  await until('PATCHes under way', () => sent.filter((entry) => entry.userAgent.startsWith('faults/idle-kill/') && entry.status === 200).length >= 10)
  const killer = new pg.Client({ connectionString: postgres.url })
  await killer.connect()
  let kills = 0
  const deadline = Date.now() + 20_000
  try {
    // one statement finds and kills: between a server statement and the next its backend is
    // "idle in transaction" for a fraction of a millisecond, so look as often as possible
    while (kills < 5 && Date.now() < deadline) {
      const { rows } = await killer.query<{ killed: boolean }>(`SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
        WHERE state = 'idle in transaction' AND datname = current_database() AND pid <> pg_backend_pid()`)
      kills += rows.filter((row) => row.killed).length
    }
  } finally {
    await killer.end()
  }
  // a few more PATCHes after the last kill: the pool must have replaced the dead connections
  const afterKills = sent.length
  await until('PATCHes succeeding after the kills', () => sent.slice(afterKills).filter((entry) => entry.status === 200).length >= 10)
  await run.stop()
  t.ok(kills >= 1, `${kills} backends terminated while idle in transaction`)
  await judge(t, 'idle-kill')
  faultsSurvived += kills
})

t.teardown(() => {
  const byStatus = new Map<string, number>()
  for (const entry of sent) {
    const key = entry.error === undefined ? String(entry.status) : 'no answer'
    byStatus.set(key, (byStatus.get(key) ?? 0) + 1)
  }
  recordFigures({
    part: 'faults',
    faultsSurvived,
    inputsTried: sent.length,
    serverErrors: sent.filter((entry) => entry.status >= 500 && entry.status !== 503).length,
    racesLost,
    verdicts: { faults: `${faultsSurvived} survived (PostgreSQL restart, Redis restart, idle-in-transaction kills), statuses ${[...byStatus].map(([status, count]) => `${status}×${count}`).join(' ')}` }
  })
})
