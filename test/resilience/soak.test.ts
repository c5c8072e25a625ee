import { readdirSync, readFileSync } from 'node:fs'
import { availableParallelism, loadavg } from 'node:os'
import { Agent, request as httpRequest } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { agentBody, createSchema } from '../helper.js'
import { basic, bootstrap, withDb } from '../support/oauth-flow.js'
import { ensureBuild, waitFor } from '../support/private-services.js'
import { quantile, recordFigures, slope, spawnServer } from './support.js'

/**
 * Soak (issue 11): mixed traffic at a fixed arrival rate (open loop: a request starts every
 * 1/RATE s whether or not earlier ones finished) against the compiled server, for
 * RESILIENCE_SOAK_SECONDS (30 by default; 300+ for a real soak) at RESILIENCE_SOAK_RPS (40).
 * Reported and bounded: the RSS slope (least squares over /proc/<pid>/status VmRSS samples taken
 * each second, after the first fifth of the run, which is JIT and heap warm-up), open file
 * descriptors (/proc/<pid>/fd) before and after, the p99 latency of the first and the last third
 * (judged only while the machine's load average is under twice its cores: other people's work on a
 * shared machine moves latency, not the server), the server's CPU time per request in the first
 * and the last third (/proc/<pid>/stat: insensitive to that), and that every token the server
 * answered 200 for has its token.issued audit event.
 */

const SECONDS = Number(process.env.RESILIENCE_SOAK_SECONDS ?? 30)
const RATE = Number(process.env.RESILIENCE_SOAK_RPS ?? 40)
const MAX_IN_FLIGHT = 64
// A short run's slope is mostly the heap growing to its working size (V8 grows it in steps and
// gives memory back only at a major GC): 30 s runs measured from 20 to 79 MB/min with no leak. So
// the slope is judged from 120 s on (a leak then dominates it), and always reported; the floor
// below, which a leak raises and the sawtooth does not, is judged in every run.
const SLOPE_JUDGED = SECONDS >= 120
const SLOPE_BOUND_MB_PER_MIN = SECONDS >= 180 ? 15 : 30
const FLOOR_BOUND_MB = SECONDS >= 180 ? 32 : 64

await ensureBuild()
const { databaseUrl } = await createSchema(t)
const admin = await bootstrap(databaseUrl)
// limits off: the soak measures the server, not the limiter's refusals
const { base, pid, server } = await spawnServer(t, databaseUrl, {
  RATE_LIMIT_TOKEN_PER_CLIENT: '0', RATE_LIMIT_AUTH_FAILURES_PER_IP: '0', TOKEN_MONTHLY_QUOTA: '0', MAX_AGENTS_PER_OWNER: '0'
})

const agent = new Agent({ keepAlive: true, maxSockets: 64 })
interface Answer { status: number, body: string, ms: number }

function send (method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  const started = performance.now()
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { method, headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) }, agent }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, ms: performance.now() - started }))
      res.on('error', reject)
    })
    req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')))
    req.on('error', reject)
    req.end(body)
  })
}

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const JSON_TYPE = { 'content-type': 'application/json' }
async function tokenFor (clientId: string, secret: string): Promise<string> {
  const res = await send('POST', '/api/v1/token', { authorization: basic(clientId, secret), ...FORM }, 'grant_type=client_credentials')
  if (res.status !== 200) throw new Error(`token refused: ${res.status} ${res.body}`)
  return (JSON.parse(res.body) as { access_token: string }).access_token
}

const adminBearer = { authorization: `Bearer ${await tokenFor(admin.clientId, admin.clientSecret)}` }
interface Worker { agentId: string, credentialId: string, secret: string, tokens: string[], rotationsStarted: number, rotationsDone: number }
const workers: Worker[] = []
for (let index = 0; index < 5; index += 1) {
  const created = await send('POST', '/api/v1/agents', { ...adminBearer, ...JSON_TYPE }, JSON.stringify(agentBody({ capabilities: ['docs:read', 'tokens:read'] })))
  const agentId = (JSON.parse(created.body) as { agentId: string }).agentId
  const credential = JSON.parse((await send('POST', `/api/v1/agents/${agentId}/credentials`, adminBearer)).body) as { credentialId: string, clientSecret: string }
  workers.push({ agentId, credentialId: credential.credentialId, secret: credential.clientSecret, tokens: [], rotationsStarted: 0, rotationsDone: 0 })
}

/**
 * One kind of request: what it sends, and the statuses that are right for it. `rotated`: a
 * rotation of this worker's secret happened while the request was in flight, so its 401 is right.
 */
interface Kind { name: string, weight: number, expected: number[], run: (worker: Worker) => Promise<Answer & { rotated?: boolean }> }
const pick = <T>(items: T[]): T => items[Math.floor(Math.random() * items.length)]
async function withSecret (worker: Worker, request: (secret: string) => Promise<Answer>): Promise<Answer & { rotated: boolean }> {
  // a rotation commits before its answer reaches us: a 401 is excused when a rotation was under
  // way at any moment of this request, not only when the secret we hold has already changed
  const started = worker.rotationsStarted
  const pending = worker.rotationsStarted !== worker.rotationsDone
  const answer = await request(worker.secret)
  return { ...answer, rotated: answer.status === 401 && (pending || worker.rotationsStarted !== started) }
}
const KINDS: Kind[] = [
  {
    name: 'token', weight: 30, expected: [200],
    run: async (worker) => {
      const res = await withSecret(worker, (secret) => send('POST', '/api/v1/token', { authorization: basic(worker.agentId, secret), ...FORM }, 'grant_type=client_credentials'))
      if (res.status === 200) worker.tokens = [...worker.tokens.slice(-20), (JSON.parse(res.body) as { access_token: string }).access_token]
      return res
    }
  },
  {
    name: 'token by post', weight: 8, expected: [200],
    run: async (worker) => await withSecret(worker, (secret) => send('POST', '/api/v1/token', JSON_TYPE, JSON.stringify({ grant_type: 'client_credentials', client_id: worker.agentId, client_secret: secret })))
  },
  { name: 'wrong secret', weight: 4, expected: [401], run: async (worker) => await send('POST', '/api/v1/token', { authorization: basic(worker.agentId, `${worker.secret.slice(0, -4)}AAAA`), ...FORM }, 'grant_type=client_credentials') },
  {
    name: 'introspect', weight: 15, expected: [200],
    run: async (worker) => await send('POST', '/api/v1/token/introspect', { ...adminBearer, ...FORM }, `token=${worker.tokens.length > 0 ? pick(worker.tokens) : 'x'}`)
  },
  {
    name: 'revoke', weight: 4, expected: [200],
    run: async (worker) => await send('POST', '/api/v1/token/revoke', { ...adminBearer, ...FORM }, `token=${worker.tokens.shift() ?? 'x'}`)
  },
  { name: 'read agent', weight: 12, expected: [200], run: async (worker) => await send('GET', `/api/v1/agents/${worker.agentId}`, adminBearer) },
  { name: 'list agents', weight: 6, expected: [200], run: async () => await send('GET', '/api/v1/agents?limit=20', adminBearer) },
  { name: 'update agent', weight: 5, expected: [200], run: async (worker) => await send('PATCH', `/api/v1/agents/${worker.agentId}`, { ...adminBearer, ...JSON_TYPE }, JSON.stringify({ version: `1.0.${Math.floor(Math.random() * 1000)}` })) },
  {
    name: 'rotate', weight: 1, expected: [200],
    run: async (worker) => {
      worker.rotationsStarted += 1
      try {
        const res = await send('POST', `/api/v1/agents/${worker.agentId}/credentials/${worker.credentialId}/rotate`, adminBearer)
        if (res.status === 200) worker.secret = (JSON.parse(res.body) as { clientSecret: string }).clientSecret
        return res
      } finally {
        worker.rotationsDone += 1
      }
    }
  },
  { name: 'audit page', weight: 4, expected: [200], run: async () => await send('GET', '/api/v1/audit?limit=50', adminBearer) },
  { name: 'health', weight: 5, expected: [200], run: async () => await send('GET', '/health') },
  { name: 'jwks', weight: 3, expected: [200], run: async () => await send('GET', '/.well-known/jwks.json') },
  { name: 'not found', weight: 3, expected: [404], run: async () => await send('GET', `/api/v1/agents/${crypto.randomUUID()}`, adminBearer) }
]
const totalWeight = KINDS.reduce((sum, kind) => sum + kind.weight, 0)
function chooseKind (): Kind {
  let left = Math.random() * totalWeight
  for (const kind of KINDS) {
    left -= kind.weight
    if (left < 0) return kind
  }
  return KINDS[0]
}

const vmRssMb = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024
const openFds = () => readdirSync(`/proc/${pid}/fd`).length
/** user + system CPU time of the server so far, in clock ticks (1/100 s on Linux) */
const cpuTicks = () => {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return Number(fields[11]) + Number(fields[12])
}
const sample = (at: number): Sample => ({ at, rssMb: vmRssMb(), fds: openFds(), cpu: cpuTicks() })

interface Sample { at: number, rssMb: number, fds: number, cpu: number }
interface Done { kind: string, at: number, status: number, ms: number }

const samples: Sample[] = []
const done: Done[] = []
const failures: string[] = []
let startFds = 0
let endFds = 0
let achievedRate = 0
let warmUpIssued = 0
let skipped = 0
let shed = 0

t.test(`${SECONDS} s of mixed traffic at ${RATE} requests/s`, async (t) => {
  // a short warm-up at the same mix, then the baseline: the pools and the JIT have started
  for (let index = 0; index < 40; index += 1) {
    const kind = chooseKind()
    const answer = await kind.run(pick(workers)).catch(() => undefined)
    if (kind.name.startsWith('token') && answer?.status === 200) warmUpIssued += 1
  }
  startFds = openFds()

  const started = performance.now()
  const interval = 1000 / RATE
  const inFlight = new Set<Promise<void>>()
  let due = 0
  let nextSample = 0
  while (performance.now() - started < SECONDS * 1000) {
    const elapsed = performance.now() - started
    if (elapsed >= nextSample) {
      samples.push(sample(elapsed / 1000))
      nextSample += 1000
    }
    // open loop: every request whose start time has come is started now, whether or not earlier
    // ones finished; past MAX_IN_FLIGHT a slot is skipped (and counted), never made up later in a
    // burst, so a stall shows as a lower achieved rate instead of a pile-up measured as the server's
    for (; due * interval <= elapsed; due += 1) {
      if (inFlight.size >= MAX_IN_FLIGHT) {
        skipped += 1
        continue
      }
      const kind = chooseKind()
      const at = elapsed / 1000
      const running: Promise<void> = kind.run(pick(workers)).then((answer) => {
        done.push({ kind: kind.name, at, status: answer.status, ms: answer.ms })
        // a 503 is documented on every route but the JWKS (a dependency, or the /health probe, did
        // not answer in time): counted and reported, not a failure; any other 5xx is
        if (answer.status === 503 && kind.name !== 'jwks') shed += 1
        else if (!kind.expected.includes(answer.status) && answer.rotated !== true) failures.push(`${kind.name}: ${answer.status} ${answer.body.slice(0, 200)}`)
      }, (error: Error) => { failures.push(`${kind.name}: ${error.message}`) }).finally(() => inFlight.delete(running))
      inFlight.add(running)
    }
    await sleep(Math.max(1, Math.min(interval, nextSample - (performance.now() - started))))
  }
  await Promise.all(inFlight)
  achievedRate = done.length / SECONDS
  samples.push(sample((performance.now() - started) / 1000))

  t.equal(failures.length, 0, `every answer as expected for its kind (${done.length} requests)`, { failures: failures.slice(0, 20) })
  // below this the machine (shared, 2 cores) or the server could not keep up: the figures would not mean much
  t.ok(achievedRate >= RATE * 0.75, `the rate was kept: ${achievedRate.toFixed(1)}/s of ${RATE}/s (${skipped} slots skipped with ${MAX_IN_FLIGHT} in flight)`)
  t.equal(done.filter((entry) => entry.status >= 500 && !(entry.status === 503 && entry.kind !== 'jwks')).length, 0, 'no 5xx but documented 503s')
  t.comment(`${shed} documented 503s (a dependency or the health probe not answering in time under load)`)
  t.equal(server.child.exitCode, null, 'the server is still running')
})

let rssSlope = 0
let drift = { first: 0, last: 0 }
let cpuPerRequest = { first: 0, last: 0 }
let rssFloor = { first: 0, last: 0 }
let machineLoad = 0
let missingAudit = 0

t.test('figures within bounds', async (t) => {
  const steady = samples.filter((sample) => sample.at >= SECONDS / 5)
  rssSlope = slope(steady.map((sample) => [sample.at / 60, sample.rssMb]))
  const rssStart = samples[0]?.rssMb ?? 0
  const rssEnd = samples.at(-1)?.rssMb ?? 0
  t.comment(`RSS ${rssStart.toFixed(1)} → ${rssEnd.toFixed(1)} MB (peak ${Math.max(...samples.map((sample) => sample.rssMb)).toFixed(1)}), slope ${rssSlope.toFixed(2)} MB/min over ${steady.length} samples`)
  if (SLOPE_JUDGED) t.ok(rssSlope < SLOPE_BOUND_MB_PER_MIN, `RSS slope ${rssSlope.toFixed(2)} MB/min < ${SLOPE_BOUND_MB_PER_MIN} MB/min`)
  else t.comment(`RSS slope reported, not judged: ${SECONDS} s is mostly warm-up (judged from 120 s; the floor is judged below)`)
  t.ok(rssEnd < 512, `RSS at the end ${rssEnd.toFixed(0)} MB < 512 MB`)
  // V8 lets the heap grow and gives memory back at a major GC: RSS is a sawtooth whose slope
  // depends on where the run ends in it. Its floor (the lowest sample of each half) is what a leak raises.
  const half = steady.length / 2
  rssFloor = { first: Math.min(...steady.slice(0, half).map((entry) => entry.rssMb)), last: Math.min(...steady.slice(half).map((entry) => entry.rssMb)) }
  t.comment(`RSS floor: ${rssFloor.first.toFixed(1)} MB in the first half, ${rssFloor.last.toFixed(1)} MB in the last`)
  t.ok(rssFloor.last - rssFloor.first < FLOOR_BOUND_MB, `the RSS floor rose ${(rssFloor.last - rssFloor.first).toFixed(1)} MB (< ${FLOOR_BOUND_MB} MB)`)

  // connections our client kept alive are the server's fds too: close them, then let it settle
  agent.destroy()
  await waitFor('the server to close the client\'s sockets', () => openFds() <= startFds + 25, 15_000, 200).catch(() => undefined)
  endFds = openFds()
  t.comment(`open fds: ${startFds} before, peak ${Math.max(...samples.map((sample) => sample.fds))}, ${endFds} after`)
  // the PostgreSQL pool may have grown to its 20 connections under load; those idle out after 30 s
  t.ok(endFds <= startFds + 25, `fds after (${endFds}) ≤ before (${startFds}) + 25`)

  const third = SECONDS / 3
  const inThird = (index: number) => done.filter((entry) => entry.at >= index * third && (index === 2 || entry.at < (index + 1) * third))
  drift = { first: quantile(inThird(0).map((entry) => entry.ms), 0.99), last: quantile(inThird(2).map((entry) => entry.ms), 0.99) }
  // CPU time per request hardly depends on what else runs on the machine; latency does
  const cpuAt = (at: number) => (samples.find((entry) => entry.at >= at) ?? samples.at(-1) as Sample).cpu
  cpuPerRequest = {
    first: (cpuAt(third) - cpuAt(0)) * 10 / Math.max(1, inThird(0).length),
    last: (cpuAt(SECONDS) - cpuAt(2 * third)) * 10 / Math.max(1, inThird(2).length)
  }
  t.comment(`server CPU per request: first third ${cpuPerRequest.first.toFixed(2)} ms, last third ${cpuPerRequest.last.toFixed(2)} ms`)
  t.ok(cpuPerRequest.last <= 2 * cpuPerRequest.first + 0.5, 'CPU per request of the last third ≤ 2 × the first + 0.5 ms')

  machineLoad = loadavg()[0]
  t.comment(`p99 latency: first third ${drift.first.toFixed(1)} ms, last third ${drift.last.toFixed(1)} ms (×${(drift.last / drift.first).toFixed(2)}); p50 overall ${quantile(done.map((entry) => entry.ms), 0.5).toFixed(1)} ms; load average ${machineLoad.toFixed(1)} on ${availableParallelism()} cores`)
  if (machineLoad <= 2 * availableParallelism()) {
    // generous: single-digit-ms p99s are jumpy on a shared 2-core machine; a leak or a queue grows past this
    t.ok(drift.last <= 3 * drift.first + 25, 'p99 of the last third ≤ 3 × the first + 25 ms')
  } else {
    t.comment(`p99 drift not judged: the machine's load average (${machineLoad.toFixed(1)}) is over twice its cores; CPU per request is judged instead`)
  }

  // every token the server said it issued is in the audit trail, once (the group commit lost none)
  const issued = warmUpIssued + done.filter((entry) => entry.kind.startsWith('token') && entry.status === 200).length
  const audited = await withDb(databaseUrl, async (db) => Number((await db.query(
    "SELECT count(*) AS n FROM audit_events WHERE action = 'token.issued' AND agent_id = ANY($1::uuid[])", [workers.map((worker) => worker.agentId)])).rows[0].n))
  // a 200 the client saw without its event is a race lost; a token the client gave up waiting for
  // (a transport failure) may have its event without the 200 having been seen
  missingAudit = Math.max(0, issued - audited)
  const gaveUp = failures.filter((failure) => !/: \d{3} /.test(failure)).length
  if (gaveUp === 0) t.equal(audited, issued, `${audited} token.issued events for the ${issued} tokens answered 200`)
  else t.ok(audited >= issued, `${audited} token.issued events for the ${issued} tokens answered 200 (${gaveUp} requests without an answer)`)
})

t.teardown(() => {
  const byStatus = new Map<number, number>()
  for (const entry of done) byStatus.set(entry.status, (byStatus.get(entry.status) ?? 0) + 1)
  recordFigures({
    part: 'soak',
    inputsTried: done.length,
    serverErrors: done.filter((entry) => entry.status >= 500 && !(entry.status === 503 && entry.kind !== 'jwks')).length,
    documented503s: shed,
    skipped,
    racesLost: missingAudit,
    verdicts: {
      'RSS slope': `${rssSlope.toFixed(2)} MB/min (${SLOPE_JUDGED ? `bound ${SLOPE_BOUND_MB_PER_MIN}` : 'reported; judged from 120 s'}) over ${SECONDS} s at ${achievedRate.toFixed(0)}/s (${samples[0]?.rssMb.toFixed(0)} → ${samples.at(-1)?.rssMb.toFixed(0)} MB)`,
      'RSS floor': `${rssFloor.first.toFixed(0)} → ${rssFloor.last.toFixed(0)} MB (first half → last half, bound +${FLOOR_BOUND_MB})`,
      'open fds': `${startFds} before, ${endFds} after`,
      'p99 drift': `${drift.first.toFixed(1)} → ${drift.last.toFixed(1)} ms (×${(drift.last / drift.first).toFixed(2)})${machineLoad > 2 * availableParallelism() ? `, not judged (load average ${machineLoad.toFixed(1)})` : ''}`,
      'CPU per request': `${cpuPerRequest.first.toFixed(2)} → ${cpuPerRequest.last.toFixed(2)} ms`,
      'documented 503s': `${shed} of ${done.length}`
    },
    statuses: Object.fromEntries(byStatus),
    // every 5th sample: enough to see whether RSS climbs steadily or levels off
    rssMb: samples.filter((_, index) => index % 5 === 0).map((sample) => Math.round(sample.rssMb)),
    fds: samples.filter((_, index) => index % 5 === 0).map((sample) => sample.fds)
  })
})
