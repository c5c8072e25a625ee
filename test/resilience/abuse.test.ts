import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import pg from 'pg'
import t from 'tap'
import { agentBody, createSchema } from '../helper.js'
import { basic, bootstrap } from '../support/oauth-flow.js'
import { ensureBuild, startPrivateRedis, waitFor } from '../support/private-services.js'
import { generateSecret } from '../../services/secrets.js'
import { quantile, recordFigures, spawnServer } from './support.js'
import { createHttp, registerOverHttp, statusLine, type Answer, type RegisteredClient } from './http.js'

/**
 * Abuse (issue 11), over real TCP against the compiled server behind a trusted proxy (TRUST_PROXY,
 * X-Forwarded-For names the attacker), at the default per-address limits:
 *
 * - concurrent brute force: hundreds of wrong secrets for one client at once from one address;
 * - credential spraying: a few secrets against many client ids from one address, and one client's
 *   secret guessed from many addresses;
 * - unauthenticated floods: thousands of token-less and bad-Bearer requests to the management API
 *   from one address and from several.
 *
 * How verifications are counted: every argon2 verification of a failed client authentication ends
 * in exactly one 401 `invalid_client` and one `auth.failed` audit row (plugins/client-auth.ts,
 * `reject`), while an address past RATE_LIMIT_AUTH_FAILURES_PER_IP is answered 429 before any
 * lookup or verification; so the 401s are the verifications, and the audit rows must agree. As an
 * independent check, the server's own CPU time over the brute force is divided by the CPU time of
 * one failed authentication measured on the same server just before: argon2 (19 MiB, t=2) is
 * nearly all of it, so the quotient bounds the verifications that really ran. Timing of unknown vs
 * known client is timing.test.ts.
 */

const AUTH_LIMIT = 30
const BEARER_LIMIT = 100
const BRUTE_FORCE = 300
const INVALID_CLIENT = '{"error":"invalid_client","error_description":"client authentication failed"}'

await ensureBuild()
const { databaseUrl } = await createSchema(t)
// a Redis of our own: the limits' windows are keyed by address, and other files' servers use the shared one
const redis = await startPrivateRedis(t)
const adminClient = await bootstrap(databaseUrl)
const SERVER_ENV = {
  REDIS_URL: redis.url,
  TRUST_PROXY: '127.0.0.1',
  RATE_LIMIT_AUTH_FAILURES_PER_IP: String(AUTH_LIMIT),
  RATE_LIMIT_BEARER_FAILURES_PER_IP: String(BEARER_LIMIT),
  RATE_LIMIT_TOKEN_PER_CLIENT: '0',
  TOKEN_MONTHLY_QUOTA: '0',
  MAX_AGENTS_PER_OWNER: '0'
}
const { base, pid, server } = await spawnServer(t, databaseUrl, SERVER_ENV)
// a second instance of the same deployment (same database, same Redis): limits are the address's, not the instance's
const other = await spawnServer(t, databaseUrl, SERVER_ENV)
const db = new pg.Pool({ connectionString: databaseUrl, max: 2 })
t.teardown(() => db.end())
const http = createHttp()
t.teardown(() => http.close())

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const JSON_TYPE = { 'content-type': 'application/json' }
const verdicts: Record<string, string> = {}
let inputsTried = 0

async function token (clientId: string, secret: string, ip: string): Promise<Answer> {
  inputsTried += 1
  return await http.send(base, 'POST', '/api/v1/token', { authorization: basic(clientId, secret), ...FORM, 'x-forwarded-for': ip }, 'grant_type=client_credentials')
}

const adminAnswer = await token(adminClient.clientId, adminClient.clientSecret, '192.0.2.1')
const adminBearer = { authorization: `Bearer ${(JSON.parse(adminAnswer.body) as { access_token: string }).access_token}`, 'x-forwarded-for': '192.0.2.1' }

type Client = RegisteredClient
const newClient = async (): Promise<Client> =>
  await registerOverHttp(http, base, adminBearer, agentBody({ capabilities: ['docs:read'], owner: `abuse-${randomUUID().slice(0, 8)}` }))

/** The server's CPU time so far (all threads: argon2 runs on libuv's), in ms. */
function cpuMs (): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // utime and stime are fields 14 and 15 of the line, 12 and 13 after "pid (comm) "; clock ticks of 10 ms
  return (Number(fields[11]) + Number(fields[12])) * 10
}

/** Failed client authentications audited for `ip`, by reason. */
async function authFailures (ip: string): Promise<Map<string, number>> {
  const { rows } = await db.query<{ reason: string, n: number }>(
    "SELECT metadata->>'reason' AS reason, count(*)::int AS n FROM audit_events WHERE action = 'auth.failed' AND ip_address = $1 GROUP BY 1", [ip])
  return new Map(rows.map((row) => [row.reason, row.n]))
}

const sum = (map: Map<string, number>) => [...map.values()].reduce((total, n) => total + n, 0)
const tally = (answers: Answer[]) => {
  const statuses = new Map<string, number>()
  for (const answer of answers) statuses.set(String(answer.status), (statuses.get(String(answer.status)) ?? 0) + 1)
  return statuses
}
/** The one 401 every failed client authentication gets: status, body and challenge. */
const shapeOf = (answer: Answer) => `${answer.status} ${answer.body} ${String(answer.headers['www-authenticate'])}`

t.test(`concurrent brute force: ${BRUTE_FORCE} wrong secrets at once from one address`, async (t) => {
  const target = await newClient()
  const bystander = await newClient()

  // a failed authentication's cost here, one at a time (argon2 and everything around it), and a
  // first authentication's latency on this server as it is now
  const calibration = '198.51.100.1'
  const cpuBefore = cpuMs()
  const calibrationTries = 10
  for (let n = 0; n < calibrationTries; n += 1) t.equal((await token(target.agentId, generateSecret(target.credentialId), calibration)).status, 401)
  const cpuPerFailure = (cpuMs() - cpuBefore) / calibrationTries
  const firstTimes: number[] = []
  for (let n = 0; n < 3; n += 1) {
    const fresh = await newClient()
    const answer = await token(fresh.agentId, fresh.secret, `198.51.100.${10 + n}`)
    t.equal(answer.status, 200)
    firstTimes.push(answer.ms)
  }
  const baseline = quantile(firstTimes, 0.5)
  // The attacker's address has a verification queue of its own, one at a time, in front of the
  // two shared argon2 slots: the bystander waits for at most the one attacker verification in
  // progress, then runs its own — about two verifications. 4 × a first authentication measured
  // just now covers that plus a busy event loop; 1.5 s is the floor for a loaded machine. Before
  // defect 5 was fixed it queued behind ~200 verifications (seconds) or got a 503.
  const bound = Math.max(1500, 4 * baseline)

  const attacker = '203.0.113.66'
  const started = performance.now()
  const cpuAtStart = cpuMs()
  const answeredAt: number[] = []
  let firstFailure = false
  const flood = Promise.all(Array.from({ length: BRUTE_FORCE }, async (_, n) => {
    const answer = await token(target.agentId, generateSecret(target.credentialId), attacker)
    answeredAt[n] = performance.now() - started
    if (answer.status === 401) firstFailure = true
    return answer
  }))
  await waitFor('the first verification of the flood', () => firstFailure, 120_000, 5)
  const own = await token(bystander.agentId, bystander.secret, '198.51.100.77')
  const answers = await flood
  const cpu = cpuMs() - cpuAtStart

  const failures = answers.flatMap((answer, n) => answer.status === 401 ? [n] : [])
  const refusals = answers.flatMap((answer, n) => answer.status === 429 ? [n] : [])
  const audited = await authFailures(attacker)
  const lastFailure = Math.max(...failures.map((n) => answeredAt[n]))
  const refusalMedian = quantile(refusals.map((n) => answeredAt[n]), 0.5)
  const cpuVerifications = cpu / cpuPerFailure

  t.same([...tally(answers).keys()].sort(), ['401', '429'], `only 401 and 429 (${statusLine(tally(answers))})`)
  t.ok(failures.length <= AUTH_LIMIT, `${failures.length} verifications (401s) of ${BRUTE_FORCE} tries, limit ${AUTH_LIMIT}`)
  t.equal(sum(audited), failures.length, 'one auth.failed row per verification, none for a refusal')
  t.equal(failures.length + refusals.length, BRUTE_FORCE)
  t.ok(refusals.every((n) => answers[n].headers['retry-after'] !== undefined), 'every 429 carries Retry-After')
  t.ok(refusalMedian < lastFailure, `refused at once: the 429s' median answer at ${refusalMedian.toFixed(0)} ms, before the last verification ended (${lastFailure.toFixed(0)} ms)`)
  t.ok(cpuVerifications <= 2 * AUTH_LIMIT, `the server's CPU over the flood (${cpu} ms) is ≈ ${cpuVerifications.toFixed(0)} failed authentications of ${cpuPerFailure.toFixed(0)} ms (≤ ${2 * AUTH_LIMIT})`)
  t.equal(own.status, 200, 'the bystander from another address gets its token')
  t.ok(own.ms < bound, `promptly: ${own.ms.toFixed(0)} ms (bound ${bound.toFixed(0)} ms = max(1500, 4 × ${baseline.toFixed(0)} ms))`)
  t.equal(new Set(failures.map((n) => shapeOf(answers[n]))).size, 1, 'every failure the same 401')
  verdicts['brute force'] = `${failures.length} verifications of ${BRUTE_FORCE} tries (limit ${AUTH_LIMIT}; CPU ≈ ${cpuVerifications.toFixed(0)}), ` +
    `${refusals.length} × 429 (median ${refusalMedian.toFixed(0)} ms); bystander's token in ${own.ms.toFixed(0)} ms (bound ${bound.toFixed(0)})`
})

t.test(`concurrent brute force over two instances: ${BRUTE_FORCE} wrong secrets from one address, spread over both`, async (t) => {
  const target = await newClient()
  const attacker = '203.0.113.67'
  const answers = await Promise.all(Array.from({ length: BRUTE_FORCE }, (_, n) => {
    inputsTried += 1
    return http.send(n % 2 === 0 ? base : other.base, 'POST', '/api/v1/token',
      { authorization: basic(target.agentId, generateSecret(target.credentialId)), ...FORM, 'x-forwarded-for': attacker }, 'grant_type=client_credentials')
  }))
  const failures = answers.filter((answer) => answer.status === 401).length
  const refusals = answers.filter((answer) => answer.status === 429).length
  t.same([...tally(answers).keys()].sort(), ['401', '429'], `only 401 and 429 (${statusLine(tally(answers))})`)
  t.ok(failures <= AUTH_LIMIT, `${failures} verifications of ${BRUTE_FORCE} tries over two instances, limit ${AUTH_LIMIT}`)
  t.equal(sum(await authFailures(attacker)), failures, 'one auth.failed row per verification')
  verdicts['brute force, 2 instances'] = `${failures} verifications of ${BRUTE_FORCE} tries spread over two instances (limit ${AUTH_LIMIT}), ${refusals} × 429`
})

t.test('credential spraying from one address: 3 secrets × 100 client ids', async (t) => {
  const agents = await Promise.all(Array.from({ length: 30 }, () => newClient()))
  const clientIds = [
    ...agents.map((agent) => agent.agentId),
    ...Array.from({ length: 50 }, () => randomUUID()),
    ...['admin', 'root', 'test', 'service', 'agent', 'client', 'ADMIN', 'a', '0', 'null',
      'undefined', 'sk_live_', '00000000-0000-0000-0000-000000000000', 'system', 'default', 'guest', 'user', 'api', 'bot', 'demo']
  ]
  // a real credential's id with a wrong secret, an unknown credential, and no secret of ours at all
  const secrets = [generateSecret(agents[0].credentialId), generateSecret(randomUUID()), 'Password123!']
  const sprayer = '203.0.113.88'
  const answers = await Promise.all(clientIds.flatMap((clientId) => secrets.map((secret) => token(clientId, secret, sprayer))))
  const failures = answers.filter((answer) => answer.status === 401)
  const refusals = answers.filter((answer) => answer.status === 429)
  const audited = await authFailures(sprayer)
  t.same([...tally(answers).keys()].sort(), ['401', '429'], `only 401 and 429 (${statusLine(tally(answers))})`)
  t.ok(failures.length <= AUTH_LIMIT, `${failures.length} verifications of ${answers.length} tries, limit ${AUTH_LIMIT}`)
  t.equal(sum(audited), failures.length, `one auth.failed row per verification (${[...audited].map(([reason, n]) => `${reason} ${n}`).join(', ')})`)
  t.same([...new Set(failures.map(shapeOf))], [`401 ${INVALID_CLIENT} Basic realm="agentidp", charset="UTF-8"`], 'every failure the same 401 invalid_client')
  verdicts['spraying, one address'] = `${failures.length} verifications of ${answers.length} tries (${secrets.length} secrets × ${clientIds.length} ids), ${refusals.length} × 429, one 401 shape`
})

t.test('credential spraying from many addresses against one client', async (t) => {
  const target = await newClient()
  // 40 addresses trying twice (under the limit: every try verified) and 3 trying 40 times (over it)
  const plan = [
    ...Array.from({ length: 40 }, (_, n) => ({ ip: `10.77.0.${n + 1}`, tries: 2 })),
    ...Array.from({ length: 3 }, (_, n) => ({ ip: `10.77.1.${n + 1}`, tries: 40 }))
  ]
  const results = await Promise.all(plan.map(async ({ ip, tries }) => ({
    ip, tries, answers: await Promise.all(Array.from({ length: tries }, () => token(target.agentId, generateSecret(target.credentialId), ip)))
  })))
  const all = results.flatMap((result) => result.answers)
  const overLimit = results.filter((result) => result.answers.filter((answer) => answer.status === 401).length > AUTH_LIMIT)
  const expected = results.reduce((total, result) => total + Math.min(result.tries, AUTH_LIMIT), 0)
  const verifications = all.filter((answer) => answer.status === 401).length
  const { rows: [{ n: audited }] } = await db.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM audit_events WHERE action = 'auth.failed' AND agent_id = $1", [target.agentId])
  t.same([...tally(all).keys()].sort(), ['401', '429'], `only 401 and 429 (${statusLine(tally(all))})`)
  t.same(overLimit.map((result) => result.ip), [], `no address ran more than ${AUTH_LIMIT} verifications`)
  t.ok(verifications <= expected, `${verifications} verifications for ${all.length} tries from ${plan.length} addresses (≤ ${expected}: each address's tries up to ${AUTH_LIMIT})`)
  t.equal(audited, verifications, 'one auth.failed row per verification')
  t.same([...new Set(all.filter((answer) => answer.status === 401).map(shapeOf))], [`401 ${INVALID_CLIENT} Basic realm="agentidp", charset="UTF-8"`], 'every failure the same 401 invalid_client')
  // failing on a client_id from elsewhere never locks the client out
  const own = await token(target.agentId, target.secret, '198.51.100.99')
  t.equal(own.status, 200, 'the client itself still gets its token from its own address')
  verdicts['spraying, many addresses'] = `${verifications} verifications of ${all.length} tries from ${plan.length} addresses (bound ${expected}), one 401 shape, the client not locked out`
})

/** Token-less and bad-Bearer requests against the management API, each a different kind of failure. */
const FORGED = `${Buffer.from('{"alg":"none","typ":"at+jwt"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: randomUUID(), scope: 'agents:write' })).toString('base64url')}.`
const UNAUTHENTICATED: Array<(ip: string) => [string, string, Record<string, string>, string?]> = [
  (ip) => ['GET', '/api/v1/agents', { 'x-forwarded-for': ip }],
  (ip) => ['GET', '/api/v1/audit', { 'x-forwarded-for': ip, authorization: 'Bearer not-a-token' }],
  (ip) => ['POST', '/api/v1/agents', { 'x-forwarded-for': ip, authorization: `Bearer ${FORGED}`, ...JSON_TYPE }, JSON.stringify(agentBody())],
  (ip) => ['GET', `/api/v1/agents/${randomUUID()}`, { 'x-forwarded-for': ip, authorization: 'Basic YWRtaW46YWRtaW4=' }],
  (ip) => ['DELETE', `/api/v1/agents/${randomUUID()}`, { 'x-forwarded-for': ip, authorization: 'Bearer' }]
]

async function auditCount (): Promise<number> {
  return (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_events')).rows[0].n
}

interface Flood { name: string, addresses: string[], instances: number, answers: Map<string, Answer[]>, ms: number }
const floods: Flood[] = []

/** `perAddress` requests from each address, spread over `bases`, `concurrency` in flight at a time in all. */
async function flood (name: string, addresses: string[], perAddress: number, bases = [base], concurrency = 64): Promise<Flood> {
  const queue = addresses.flatMap((ip) => Array.from({ length: perAddress }, (_, n) => ({ ip, n }))).sort((a, b) => a.n - b.n)
  const answers = new Map<string, Answer[]>(addresses.map((ip) => [ip, []]))
  const started = Date.now()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
      const [method, path, headers, body] = UNAUTHENTICATED[next.n % UNAUTHENTICATED.length](next.ip)
      inputsTried += 1
      answers.get(next.ip)?.push(await http.send(bases[next.n % bases.length], method, path, headers, body))
    }
  }))
  const result = { name, addresses, instances: bases.length, answers, ms: Date.now() - started }
  floods.push(result)
  return result
}

t.test('unauthenticated floods: audit rows bounded, 429 past the limit', async (t) => {
  const before = await auditCount()
  const one = await flood('flood, one address', ['203.0.113.99'], 3000)
  const several = await flood('flood, 8 addresses', Array.from({ length: 8 }, (_, n) => `203.0.113.${110 + n}`), 500)
  const spread = await flood('flood, one address, 2 instances', ['203.0.113.130'], 2000, [base, other.base])
  const duringFloods = await auditCount() - before

  for (const { name, answers } of [one, several, spread]) {
    for (const [ip, mine] of answers) {
      const statuses = tally(mine)
      t.same([...statuses.keys()].sort(), ['401', '429'], `${name}, ${ip}: only 401 and 429 (${statusLine(statuses)})`)
      t.ok((statuses.get('401') ?? 0) <= BEARER_LIMIT, `${ip}: ${statuses.get('401') ?? 0} failures answered 401 (≤ ${BEARER_LIMIT}), the rest 429`)
      t.ok(mine.filter((answer) => answer.status === 429).every((answer) => answer.headers['retry-after'] !== undefined), 'every 429 carries Retry-After')
    }
  }

  // the summaries of the refusals counted so far are written at the latest when the server stops
  for (const instance of [server, other.server]) {
    const exitedAt = Date.now()
    instance.child.kill('SIGTERM')
    const exit = await instance.exited
    t.equal(exit.code, 0, `the server drained and exited 0 (in ${Date.now() - exitedAt} ms), writing its flood summaries`)
  }
  const after = await auditCount() - before

  let totalBound = 0
  for (const { name, addresses, instances, answers, ms } of [one, several, spread]) {
    let rows = 0
    let bound = 0
    let summaries = 0
    let suppressed = 0
    for (const ip of addresses) {
      const mine = answers.get(ip) as Answer[]
      const refused = mine.filter((answer) => answer.status === 429).length
      const failed = mine.filter((answer) => answer.status === 401).length
      const { rows: events } = await db.query<{ action: string, summary: boolean, suppressed: number | null, reason: string }>(
        `SELECT action, coalesce((metadata->>'summary')::boolean, false) AS summary, (metadata->>'suppressed')::int AS suppressed, metadata->>'reason' AS reason
         FROM audit_events WHERE ip_address = $1`, [ip])
      const full = events.filter((event) => event.action === 'access.denied' && !event.summary)
      const summary = events.filter((event) => event.summary)
      const countedIn = full.length + summary.reduce((total, event) => total + (event.suppressed ?? 0), 0)
      t.equal(events.filter((event) => event.action === 'auth.failed').length, failed, `${ip}: one auth.failed row per 401`)
      t.equal(countedIn, refused, `${ip}: every one of the ${refused} refusals is in a row (${full.length} in full) or a summary's count (${summary.length} summaries)`)
      // per window: the failures up to the limit (counted in Redis, shared), then on each instance
      // the first refusal in full and one summary per flush of its ledger (once a minute and at shutdown)
      const flushes = 2 + Math.floor(ms / 60_000)
      bound += BEARER_LIMIT * (1 + Math.floor(ms / 60_000)) + 2 * flushes * instances
      rows += events.length
      summaries += summary.length
      suppressed += summary.reduce((total, event) => total + (event.suppressed ?? 0), 0)
    }
    const requests = addresses.length * (answers.get(addresses[0]) as Answer[]).length
    t.ok(rows <= bound, `${name}: ${rows} audit rows for ${requests} requests (bound ${bound})`)
    totalBound += bound
    verdicts[name] = `${requests} requests in ${ms} ms → ${rows} audit rows (bound ${bound}; ${summaries} summaries counting ${suppressed} refusals)`
  }
  t.ok(after <= totalBound, `the audit table grew by ${after} rows in all (${duringFloods} while flooded; bound ${totalBound})`)
})

t.teardown(() => {
  recordFigures({
    part: 'abuse',
    inputsTried,
    serverErrors: http.serverErrors.length,
    verdicts
  })
})
