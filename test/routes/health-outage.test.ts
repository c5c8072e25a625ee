import t, { type Test } from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { build, seedAdmin } from '../helper.js'
import { migrate } from '../../repositories/migrations.js'
import { startPrivatePostgres, startPrivateRedis, waitFor } from '../support/private-services.js'
import { timedInProcess } from '../support/timing.js'

/**
 * Dependency outages against a private PostgreSQL and a private Redis (stopping the shared ones
 * would break every other test file). One app lives through every outage: recovery must never
 * need a restart, and an outage must never crash the process.
 */
const postgres = await startPrivatePostgres(t)
const redis = await startPrivateRedis(t)
await migrate(postgres.url)
const app = await build(t, { databaseUrl: postgres.url, env: { REDIS_URL: redis.url } })
// minted while everything is up: during an outage nothing could be seeded
const { headers } = await seedAdmin(app)

const HEALTHY = { status: 'ok', postgres: 'connected', redis: 'connected' }
// what a driver would say: error codes, socket wording, SQL, stack frames, module paths
const DRIVER_TEXT = /ECONN|ETIMEDOUT|EPIPE|ioredis|node_modules|\bpg\b|socket|stream|connection (terminated|refused|is closed)|timeout exceeded|SQLSTATE|SELECT|\bat .+:\d+:\d+/i

async function timed (request: () => Promise<LightMyRequestResponse>): Promise<{ response: LightMyRequestResponse, ms: number }> {
  const { result, ms } = await timedInProcess(request)
  return { response: result, ms }
}

const getHealth = () => timed(() => app.inject({ method: 'GET', url: '/health' }))
const get = (url: string) => app.inject({ method: 'GET', url })

/** Liveness never looks at a dependency; readiness names the one that fails. */
async function assertLiveButNotReady (t: Test, expected: Record<string, string>): Promise<void> {
  const live = await get('/health/live')
  t.equal(live.statusCode, 200, 'liveness stays 200 during the outage: the orchestrator must not replace the process')
  t.same(live.json(), { status: 'ok' })
  const ready = await get('/health/ready')
  t.equal(ready.statusCode, 503, 'readiness is 503: the load balancer stops sending traffic')
  t.same(ready.json(), { status: 'degraded', ...expected })
}
const listAgents = () => timed(() => app.inject({ method: 'GET', url: '/api/v1/agents', headers }))

async function healthyAgain (t: Test): Promise<void> {
  await waitFor('/health to answer 200 again', async () => (await getHealth()).response.statusCode === 200, 60_000, 200)
  const { response } = await getHealth()
  t.same(response.json(), HEALTHY, 'healthy again, without restarting the app')
}

function assertServiceUnavailable (t: Test, label: string, response: LightMyRequestResponse, ms: number, limitMs: number): void {
  t.equal(response.statusCode, 503, `${label} 503`, { body: response.body })
  t.match(response.headers['content-type'], /^application\/problem\+json/, `${label} problem+json`)
  t.match(response.json(), { status: 503, code: 'SERVICE_UNAVAILABLE' }, `${label} code SERVICE_UNAVAILABLE`)
  t.same(Object.keys(response.json()).sort(), ['code', 'detail', 'status', 'title', 'type'], `${label} problem details and nothing else`)
  t.notMatch(response.body, DRIVER_TEXT, `${label} no driver text in the body`)
  t.ok(ms < limitMs, `${label} answered in ${Math.round(ms)} ms (< ${limitMs} ms)`)
}

t.test('/health is 200 with both private services up', async (t) => {
  const { response } = await getHealth()

  t.equal(response.statusCode, 200)
  t.same(response.json(), HEALTHY)
  t.equal((await listAgents()).response.statusCode, 200, 'the seeded admin token works')
})

/**
 * One dependency down: /health is 503 within 1 s naming it (twice: the next call too), liveness
 * stays 200 while readiness is 503, and once it is back everything is 200 again without a restart.
 */
async function outage (t: Test, dependency: { stop (): Promise<void>, start (): Promise<void> }, degraded: Record<string, string>, ready: Record<string, string>): Promise<void> {
  await healthyAgain(t)
  await dependency.stop()

  const { response, ms } = await getHealth()

  t.equal(response.statusCode, 503)
  t.same(response.json(), { status: 'degraded', ...degraded })
  t.ok(ms < 1000, `answered in ${Math.round(ms)} ms`)
  const again = await getHealth()
  t.ok(again.ms < 1000 && again.response.statusCode === 503, `still 503 within 1 s on the next call (${Math.round(again.ms)} ms)`)
  await assertLiveButNotReady(t, ready)

  await dependency.start()
  await healthyAgain(t)
  t.equal((await get('/health/ready')).statusCode, 200, 'ready again')
}

t.test('a Redis outage makes /health 503 degraded within 1 s, and its return makes it 200 again', async (t) => {
  await outage(t, redis, { postgres: 'connected', redis: 'error' }, { postgres: 'connected', redis: 'error', migrations: 'current' })
})

t.test('during a Redis outage a management request answers within 3 s: served, or 503 SERVICE_UNAVAILABLE', async (t) => {
  // PostgreSQL holds the revocation state the bearer check reads, so a management request may not
  // need Redis at all; if it does, the only acceptable failure is a clean, fast 503
  await redis.stop()
  t.teardown(() => redis.start())

  for (const attempt of [1, 2]) {
    const { response, ms } = await listAgents()
    if (response.statusCode === 503) {
      assertServiceUnavailable(t, `attempt ${attempt}:`, response, ms, 3000)
      continue
    }
    t.equal(response.statusCode, 200, `attempt ${attempt}: served (200) or refused as 503`, { body: response.body })
    t.ok(Array.isArray(response.json().data), `attempt ${attempt}: the agent list`)
    t.ok(ms < 3000, `attempt ${attempt}: answered in ${Math.round(ms)} ms (< 3000 ms)`)
  }
})

t.test('a PostgreSQL outage makes /health 503 degraded within 1 s, and its return makes it 200 again', async (t) => {
  await outage(t, postgres, { postgres: 'error', redis: 'connected' }, { postgres: 'error', redis: 'connected', migrations: 'unknown' })
})

t.test('during a PostgreSQL outage an authenticated management request answers 503 SERVICE_UNAVAILABLE within 3 s', async (t) => {
  await postgres.stop()
  t.teardown(() => postgres.start())

  for (const attempt of [1, 2]) {
    const { response, ms } = await listAgents()
    assertServiceUnavailable(t, `attempt ${attempt}:`, response, ms, 3000)
  }
})

t.test('/health answers 503 within 1 s while PostgreSQL hangs, and 200 once it resumes', async (t) => {
  await healthyAgain(t)
  postgres.freeze()
  t.teardown(() => postgres.thaw())

  for (const attempt of [1, 2, 3]) {
    const { response, ms } = await getHealth()
    t.equal(response.statusCode, 503, `attempt ${attempt}: 503`)
    t.same(response.json(), { status: 'degraded', postgres: 'error', redis: 'connected' })
    t.ok(ms < 1000, `attempt ${attempt}: answered in ${Math.round(ms)} ms`)
  }

  postgres.thaw()
  await healthyAgain(t)
})

t.test('after every outage the same app still serves management requests', async (t) => {
  const { response } = await listAgents()

  t.equal(response.statusCode, 200, '', { body: response.body })
  t.ok(Array.isArray(response.json().data))
})
