import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import pg from 'pg'
import t, { type Test } from 'tap'
import { agentBody } from '../helper.js'
import { basic, bootstrap } from '../support/oauth-flow.js'
import { ensureBuild, isAlive, startPrivatePostgres, startPrivateRedis, waitFor } from '../support/private-services.js'
import { migrate } from '../../repositories/migrations.js'
import {
  FORM_TYPE, httpClient, JSON_TYPE, judgeAudit, quantile, recordFigures, spawnServer, statusCounts, tokenRequest, verifiedChain,
  type Answer, type SentRequest
} from './support.js'

/**
 * Faults in the middle of the server's work (issue 11), against the compiled server on a private
 * PostgreSQL and a private Redis, as in faults.test.ts:
 * - backends killed (`pg_terminate_backend`, idle in transaction and active) during credential
 *   rotations: after every answer exactly one of the old and the new secret authenticates — never
 *   neither (a client left without a working secret), never both;
 * - Redis paused (`CLIENT PAUSE … ALL`, then `WRITE`) under mixed traffic: every answer a success
 *   or a documented 503, within a bound, and traffic recovers;
 * - a transaction of ours holding the locks the server's writes need (an agent's row FOR UPDATE,
 *   `audit_events` in SHARE mode) for longer than the statement timeout: successes or documented
 *   503s, no 500, no lost audit event, reads and /health/live keep answering, recovery after.
 * Throughout, every request carries a unique User-Agent (the audit row records it) and every
 * success must have exactly one event of its action; the same process serves from start to end.
 */

await ensureBuild()
const postgres = await startPrivatePostgres(t)
const redis = await startPrivateRedis(t)
await migrate(postgres.url)
const admin = await bootstrap(postgres.url)
const REQUEST_TIMEOUT_MS = 10_000
const { base, pid, server } = await spawnServer(t, postgres.url, {
  REDIS_URL: redis.url,
  // the limiters stay on (they are what touches Redis on the token path) but never bite
  RATE_LIMIT_TOKEN_PER_CLIENT: '1000000',
  RATE_LIMIT_AUTH_FAILURES_PER_IP: '1000000',
  RATE_LIMIT_BEARER_FAILURES_PER_IP: '1000000',
  TOKEN_MONTHLY_QUOTA: '0',
  MAX_AGENTS_PER_OWNER: '0',
  REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS)
})
const { send } = httpClient(t, base, { timeoutMs: 30_000 })

const adminToken = await send('POST', '/api/v1/token', { authorization: basic(admin.clientId, admin.clientSecret), ...FORM_TYPE }, 'grant_type=client_credentials')
const adminBearer = { authorization: `Bearer ${(JSON.parse(adminToken.body) as { access_token: string }).access_token}` }

const PREFIX = 'midflight/'
interface Tracked extends SentRequest { answer?: Answer, ms: number }
const sent: Tracked[] = []
let sequence = 0
let faultsSurvived = 0
let racesLost = 0
const verdicts: Record<string, string> = {}

/** Sends one request with a unique User-Agent and records it (with the event its success must have written) and its latency. */
async function tracked (scenario: string, action: string, request: (userAgent: string) => Promise<Answer>): Promise<Tracked> {
  sequence += 1
  const userAgent = `${PREFIX}${scenario}/${sequence}`
  const started = Date.now()
  const entry: Tracked = { userAgent, action, status: 0, at: started, ms: 0 }
  sent.push(entry)
  try {
    const answer = await request(userAgent)
    entry.status = answer.status
    entry.answer = answer
    if (answer.status >= 500) entry.body = answer.body.slice(0, 300)
  } catch (error) {
    entry.error = (error as Error).message
  }
  entry.ms = Date.now() - started
  return entry
}

interface Client { agentId: string, credentialId: string, secret: string }
/** An agent with one credential, made before any fault is on. */
async function newClient (capabilities: string[]): Promise<Client> {
  const created = await send('POST', '/api/v1/agents', { ...adminBearer, ...JSON_TYPE }, JSON.stringify(agentBody({ capabilities })))
  const agentId = (JSON.parse(created.body) as { agentId: string }).agentId
  const credential = JSON.parse((await send('POST', `/api/v1/agents/${agentId}/credentials`, adminBearer)).body) as { credentialId: string, clientSecret: string }
  return { agentId, credentialId: credential.credentialId, secret: credential.clientSecret }
}

function mine (scenario: string): Tracked[] {
  return sent.filter((entry) => entry.userAgent.startsWith(`${PREFIX}${scenario}/`))
}

/** Every answer a success, an expected refusal or a documented 503; the audit judgement; the same process, healthy again. */
async function judge (t: Test, scenario: string, expected: number[]): Promise<void> {
  const entries = mine(scenario)
  t.comment(`${scenario}: ${entries.length} requests, ${statusCounts(entries)}`)
  const wrong = entries.filter((entry) => entry.error !== undefined || ![...expected, 503].includes(entry.status))
  t.same(wrong.map((entry) => `${entry.userAgent} ${entry.action}: ${entry.error ?? `${entry.status} ${entry.body ?? ''}`}`).slice(0, 10), [],
    'every answer is a success, an expected refusal or a documented 503; none lost')
  const undocumented = entries.filter((entry) => entry.status === 503 && !/SERVICE_UNAVAILABLE|temporarily_unavailable|"status":"degraded"/.test(entry.answer?.body ?? ''))
  t.same(undocumented.map((entry) => `${entry.userAgent} ${entry.answer?.body ?? ''}`).slice(0, 5), [], 'every 503 is a documented one')
  racesLost += await judgeAudit(t, postgres.url, `${PREFIX}${scenario}/`, entries)
  t.equal(server.child.exitCode, null, 'the server process is still running')
  t.ok(isAlive(pid), `the same process (pid ${pid}) serves: no restart`)
  await waitFor('/health to be 200 again', async () => (await send('GET', '/health', {})).status === 200, 30_000, 100)
  t.pass('/health is 200 again')
}

/** A token request with `secret`, repeated through 503s and lost answers until the server decides: 200 or 401. */
async function authenticates (scenario: string, client: Client, secret: string): Promise<boolean> {
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const { headers, body } = tokenRequest(client.agentId, secret, '')
    const entry = await tracked(scenario, 'token.issued', (userAgent) => send('POST', '/api/v1/token', { ...headers, 'user-agent': userAgent }, body))
    if (entry.status === 200) return true
    if (entry.status === 401) return false
    await sleep(entry.status === 503 ? 20 : 50)
  }
  throw new Error(`no verdict on a secret of ${client.agentId} after 200 attempts`)
}

const TTL_MS = 1000 // plugins/client-directory.ts: a record read before a change is kept at most this long
const rotationOutcomes = new Map<string, number>()
const rotationViolations: string[] = []

/**
 * One rotation of `client`'s credential, then the token endpoint's verdict on the secrets: after
 * a 200 the new secret works and the old one is refused; after a 503 or a lost answer the new
 * secret never reached the client, so the old one must still work (judged once the client
 * directory's memory has lapsed, so the answer is the database's). Returns false when the client
 * was left without a working secret (no point rotating it further).
 */
async function rotateAndCheck (scenario: string, client: Client): Promise<boolean> {
  const rotation = await tracked(scenario, 'credential.rotated', (userAgent) =>
    send('POST', `/api/v1/agents/${client.agentId}/credentials/${client.credentialId}/rotate`, { ...adminBearer, 'user-agent': userAgent }))
  const outcome = rotation.error !== undefined ? 'lost' : String(rotation.status)
  rotationOutcomes.set(outcome, (rotationOutcomes.get(outcome) ?? 0) + 1)
  const old = client.secret
  if (rotation.status === 200) {
    const fresh = (JSON.parse(rotation.answer?.body ?? '{}') as { clientSecret: string }).clientSecret
    const [freshWorks, oldWorks] = [await authenticates(scenario, client, fresh), await authenticates(scenario, client, old)]
    if (!freshWorks || oldWorks) rotationViolations.push(`${rotation.userAgent} 200: new secret ${freshWorks ? 'works' : 'refused'}, old ${oldWorks ? 'works' : 'refused'}`)
    if (freshWorks) client.secret = fresh
    return freshWorks
  }
  if (rotation.status === 503 || rotation.error !== undefined) {
    await sleep(TTL_MS + 100)
    if (await authenticates(scenario, client, old)) return true
    rotationViolations.push(`${rotation.userAgent} ${outcome} after ${rotation.ms} ms: the old secret is refused and the new one was never handed out — no working secret`)
    return false
  }
  rotationViolations.push(`${rotation.userAgent}: unexpected ${rotation.status} ${rotation.answer?.body.slice(0, 200) ?? ''}`)
  return true
}

function rotationSummary (): string {
  return [...rotationOutcomes].map(([outcome, count]) => `${outcome}×${count}`).join(' ')
}

t.test('backends killed during credential rotations: exactly one of the old and the new secret works after every answer', async (t) => {
  const scenario = 'rotate-kill'
  const clients = await Promise.all([0, 1, 2].map(() => newClient(['docs:read'])))
  const killer = new pg.Client({ connectionString: postgres.url })
  await killer.connect()
  let killing = true
  let kills = 0
  // kill the server's busy backends — between two statements of a transaction ("idle in
  // transaction") or while one runs, COMMIT included — then let some work through
  const killLoop = (async () => {
    while (killing) {
      const { rows } = await killer.query<{ killed: boolean }>(`SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
        WHERE application_name = 'agentidp' AND datname = current_database() AND pid <> pg_backend_pid()
          AND (state = 'idle in transaction' OR (state = 'active' AND query ~* '^(COMMIT|UPDATE credentials|INSERT INTO audit_events|SELECT)'))`)
      const killedNow = rows.filter((row) => row.killed).length
      kills += killedNow
      if (killedNow > 0) await sleep(Math.floor(Math.random() * 150))
    }
  })()

  const ROTATIONS = Number(process.env.RESILIENCE_ROTATIONS ?? 25)
  try {
    await Promise.all(clients.map(async (client) => {
      for (let round = 0; round < ROTATIONS; round += 1) if (!await rotateAndCheck(scenario, client)) return
    }))
  } finally {
    killing = false
    await killLoop.catch(() => {})
    await killer.end()
  }
  t.comment(`${kills} backends terminated; rotations so far: ${rotationSummary()}`)
  t.ok(kills >= 5, `backends were terminated during the rotations (${kills})`)
  t.same(rotationViolations.slice(0, 10), [], 'after every rotation exactly one of the old and the new secret authenticates')
  await judge(t, scenario, [200, 401])
  faultsSurvived += kills
})

t.test('a rotation\'s backend frozen (SIGSTOP) just before COMMIT, past the query timeout, then resumed: the client still has exactly one working secret', async (t) => {
  const scenario = 'rotate-freeze'
  const clients = await Promise.all([0, 1].map(() => newClient(['docs:read'])))
  const watcher = new pg.Client({ connectionString: postgres.url })
  await watcher.connect()
  const FREEZES = Number(process.env.RESILIENCE_FREEZES ?? 3)
  let freezes = 0
  let frozen: number | undefined
  const thaw = () => { if (frozen !== undefined) { try { process.kill(frozen, 'SIGCONT') } catch {} frozen = undefined } }
  t.teardown(thaw)
  let rotating = true
  let loopsLeft = clients.length
  const rotations = Promise.all(clients.map(async (client) => {
    while (rotating) if (!await rotateAndCheck(scenario, client)) break
    loopsLeft -= 1
  }))
  const deadline = Date.now() + 120_000
  try {
    while (freezes < FREEZES && loopsLeft > 0 && Date.now() < deadline) {
      // a rotation's transaction between its last statement (the audit INSERT) and its COMMIT
      const { rows } = await watcher.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity
        WHERE application_name = 'agentidp' AND datname = current_database() AND state = 'idle in transaction'
          AND query LIKE 'INSERT INTO audit_events%' AND backend_xid IS NOT NULL LIMIT 1`)
      if (rows.length === 0) continue
      frozen = rows[0].pid
      const frozenAt = Date.now()
      process.kill(frozen, 'SIGSTOP')
      freezes += 1
      // the server's COMMIT waits on a backend that does not answer; past its query timeout (5 s)
      // it terminates that backend and waits for the outcome (up to 15 s more), which the backend
      // decides only once it runs again: resume it after 10 s (or as soon as the rotation was
      // answered, should the server answer without waiting), then the answer must match the outcome
      await waitFor('the frozen rotation to be answered', () => mine(scenario).some((entry) =>
        entry.action === 'credential.rotated' && entry.at <= frozenAt && entry.at + entry.ms >= frozenAt + 4000), 10_000, 50).catch(() => {})
      thaw()
      await sleep(500)
    }
  } finally {
    thaw()
    rotating = false
    await rotations
    await watcher.end()
  }
  t.comment(`${freezes} backends frozen before COMMIT; rotations so far: ${rotationSummary()}`)
  t.ok(freezes >= 1, `rotations were caught between their last statement and COMMIT and frozen (${freezes})`)
  if (rotationViolations.length > 0) t.comment(rotationViolations.slice(0, 5).join('\n'))
  t.same(rotationViolations.slice(0, 10), [], 'after every rotation exactly one of the old and the new secret authenticates')
  await judge(t, scenario, [200, 401])
  faultsSurvived += freezes
})

/** Mixed traffic for the Redis and lock scenarios: token issuance, PATCH, reads, introspection, rotation, liveness. */
function mixedTraffic (scenario: string, loops: number, clients: Client[], extra: Array<{ action: string, request: (userAgent: string) => Promise<Answer> }> = [], readsOnly = false) {
  let running = true
  const kinds: Array<{ action: string, request: (client: Client, userAgent: string) => Promise<Answer> }> = [
    { action: 'token.issued', request: (client, userAgent) => { const { headers, body } = tokenRequest(client.agentId, client.secret, userAgent); return send('POST', '/api/v1/token', headers, body) } },
    { action: 'agent.updated', request: (client, userAgent) => send('PATCH', `/api/v1/agents/${client.agentId}`, { ...adminBearer, ...JSON_TYPE, 'user-agent': userAgent }, JSON.stringify({ version: `2.0.${sequence}` })) },
    { action: '', request: (client, userAgent) => send('GET', `/api/v1/agents/${client.agentId}`, { ...adminBearer, 'user-agent': userAgent }) },
    { action: 'token.introspected', request: (_client, userAgent) => send('POST', '/api/v1/token/introspect', { ...adminBearer, ...FORM_TYPE, 'user-agent': userAgent }, `token=${adminBearer.authorization.slice(7)}`) },
    { action: '', request: (_client, userAgent) => send('GET', '/health/live', { 'user-agent': userAgent }) },
    ...extra.map((kind) => ({ action: kind.action, request: (_client: Client, userAgent: string) => kind.request(userAgent) }))
  ]
  const chosen = readsOnly ? kinds.filter((kind) => kind.action === '') : kinds
  const run = async (loop: number) => {
    for (let turn = loop; running; turn += 1) {
      const kind = chosen[turn % chosen.length]
      const entry = await tracked(scenario, kind.action, (userAgent) => kind.request(clients[loop % clients.length], userAgent))
      if (entry.error !== undefined) await sleep(50)
      if (entry.status === 503) await sleep(20)
      // readers answer in a millisecond: paced, so that they do not starve the machine
      if (readsOnly) await sleep(10)
    }
  }
  const all = Promise.all(Array.from({ length: loops }, (_, loop) => run(loop)))
  return { stop: async () => { running = false; await all } }
}

/** `what` in `scenario` after `from`: how many answered and how many succeeded. */
function since (scenario: string, from: number) {
  const entries = mine(scenario).filter((entry) => entry.at >= from)
  return { answered: entries.filter((entry) => entry.status > 0).length, succeeded: entries.filter((entry) => entry.status >= 200 && entry.status < 300).length, entries }
}

t.test('Redis paused (CLIENT PAUSE ALL, then WRITE) under mixed traffic', async (t) => {
  const scenario = 'redis-pause'
  const clients = await Promise.all([0, 1, 2, 3].map(() => newClient(['docs:read'])))
  const rotating = clients[3]
  const traffic = mixedTraffic(scenario, 6, clients, [{
    action: 'credential.rotated',
    request: async (userAgent) => {
      const answer = await send('POST', `/api/v1/agents/${rotating.agentId}/credentials/${rotating.credentialId}/rotate`, { ...adminBearer, 'user-agent': userAgent })
      if (answer.status === 200) rotating.secret = (JSON.parse(answer.body) as { clientSecret: string }).clientSecret
      return answer
    }
  }])
  const control = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 })
  await control.connect()
  try {
    await waitFor('successes before the pause', () => since(scenario, 0).succeeded >= 30, 30_000, 20)
    for (const mode of ['ALL', 'WRITE']) {
      const paused = Date.now()
      await control.call('CLIENT', 'PAUSE', '3000', mode)
      await waitFor(`the ${mode} pause to pass`, () => Date.now() - paused > 3500, 10_000, 50)
      const resumed = Date.now()
      await waitFor(`successes after the ${mode} pause`, () => since(scenario, resumed).succeeded >= 30, 30_000, 20)
      const during = mine(scenario).filter((entry) => entry.at >= paused && entry.at < paused + 3000)
      t.comment(`CLIENT PAUSE 3000 ${mode}: ${during.length} requests sent during it, ${statusCounts(during)}; slowest ${Math.max(0, ...during.map((entry) => entry.ms))} ms`)
      faultsSurvived += 1
    }
  } finally {
    await control.call('CLIENT', 'UNPAUSE').catch(() => {})
    control.disconnect()
    await traffic.stop()
  }
  const latencies = mine(scenario).map((entry) => entry.ms)
  const slowest = Math.max(...latencies)
  t.ok(slowest < REQUEST_TIMEOUT_MS, `every answer within REQUEST_TIMEOUT_MS (slowest ${slowest} ms, p99 ${quantile(latencies, 0.99)} ms)`)
  await judge(t, scenario, [200, 201, 401])
  verdicts['Redis CLIENT PAUSE'] = `ALL and WRITE, 3 s each: ${statusCounts(mine(scenario))}, slowest answer ${slowest} ms (bound ${REQUEST_TIMEOUT_MS})`
})

t.test('a transaction of ours holds the locks writes need (an agent row FOR UPDATE, audit_events in SHARE mode, the chain head) past the statement timeout', async (t) => {
  const scenario = 'held-lock'
  const clients = await Promise.all([0, 1, 2].map(() => newClient(['docs:read'])))
  const writes = mixedTraffic(scenario, 5, clients)
  // readers of their own: the writers' loops all wait behind the lock
  const reads = mixedTraffic(scenario, 2, clients, [], true)
  const traffic = { stop: async () => { await Promise.all([writes.stop(), reads.stop()]) } }
  const holder = new pg.Client({ connectionString: postgres.url })
  await holder.connect()
  const HOLD_MS = 7000 // past the server's statement and query timeouts (5 s, plugins/db.ts)
  let heldFrom = 0
  let releasedAt = 0
  try {
    await waitFor('successes before the lock', () => since(scenario, 0).succeeded >= 30, 30_000, 20)
    await holder.query('BEGIN')
    await holder.query('SELECT agent_id FROM agents WHERE agent_id = $1 FOR UPDATE', [clients[0].agentId])
    await holder.query('LOCK TABLE audit_events IN SHARE MODE')
    // and the sealer's mutex, the chain head's row: sealing waits for us too
    await holder.query('SELECT 1 FROM audit_chain FOR UPDATE')
    heldFrom = Date.now()
    await waitFor('the lock to have been held long enough', () => Date.now() - heldFrom >= HOLD_MS, HOLD_MS + 5000, 50)
    await holder.query('COMMIT')
    releasedAt = Date.now()
    await waitFor('writes succeeding after the lock', () => since(scenario, releasedAt).entries.filter((entry) => entry.action === 'agent.updated' && entry.status === 200).length >= 10 &&
      since(scenario, releasedAt).entries.filter((entry) => entry.action === 'token.issued' && entry.status === 200).length >= 10, 60_000, 50)
    faultsSurvived += 1
  } finally {
    await holder.query('ROLLBACK').catch(() => {})
    await holder.end()
    await traffic.stop()
  }
  const during = mine(scenario).filter((entry) => entry.at >= heldFrom && entry.at < releasedAt)
  const overlapping = mine(scenario).filter((entry) => entry.at < releasedAt && entry.at + entry.ms >= heldFrom)
  const byAction = [...new Set(overlapping.map((entry) => entry.action))].map((action) => `${action || 'read'}: ${statusCounts(overlapping.filter((entry) => entry.action === action))} (slowest ${Math.max(...overlapping.filter((entry) => entry.action === action).map((entry) => entry.ms))} ms)`)
  t.comment(`in progress while the lock was held: ${overlapping.length} requests, ${byAction.join('; ')}`)
  // reads need no lock: GET /agents/:id and /health/live answered 200 while it was held
  const readsDuring = during.filter((entry) => entry.action === '')
  t.ok(readsDuring.length >= 10 && readsDuring.every((entry) => entry.status === 200), `reads and /health/live kept answering 200 (${readsDuring.length}, ${statusCounts(readsDuring)})`)
  const slowestLive = Math.max(0, ...during.filter((entry) => /"status":"ok"/.test(entry.answer?.body ?? '')).map((entry) => entry.ms))
  t.ok(slowestLive < HOLD_MS / 2, `/health/live never waited for the lock (slowest ${slowestLive} ms while it was held ${HOLD_MS} ms)`)
  await judge(t, scenario, [200, 201])
  const chain = await verifiedChain(postgres.url, () => send('GET', '/api/v1/audit/verify', adminBearer))
  t.ok(chain.intact && chain.checked >= chain.events, `once released, every event is sealed and the chain verifies (${chain.checked} of ${chain.events} checked, intact ${String(chain.intact)})`)
  const slowestWrite = Math.max(0, ...overlapping.filter((entry) => entry.action !== '').map((entry) => entry.ms))
  verdicts['held lock'] = `${HOLD_MS / 1000} s: ${statusCounts(overlapping)} in progress meanwhile (slowest write ${slowestWrite} ms, slowest liveness ${slowestLive} ms), chain ${chain.intact ? 'intact' : 'BROKEN'}, ${since(scenario, releasedAt).succeeded} successes after`
})

t.teardown(() => {
  racesLost += rotationViolations.length
  verdicts['rotations under faults'] = `${rotationViolations.length === 0 ? 'ok' : `${rotationViolations.length} left without exactly one working secret`}: ${rotationSummary()}`
  recordFigures({
    part: 'faults-midflight',
    faultsSurvived,
    inputsTried: sent.length,
    serverErrors: sent.filter((entry) => entry.status >= 500 && entry.status !== 503).length,
    racesLost,
    verdicts
  })
})
