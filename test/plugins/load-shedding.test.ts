import t from 'tap'
import { build } from '../helper.js'

/**
 * While the event loop lags past MAX_EVENT_LOOP_DELAY_MS the server sheds load: 503 with
 * Retry-After in the route's own error format, and liveness still answers. The lag is made here by
 * blocking the loop; @fastify/under-pressure samples it about once a second, so the test blocks
 * and asks again until the sample shows it (generous deadline: a busy machine only lags more).
 */
function blockEventLoop (ms: number): void {
  const until = Date.now() + ms
  while (Date.now() < until) { /* a stand-in for CPU-bound work the process can't keep up with */ }
}

t.test('a lagging event loop sheds API and OAuth requests with 503 + Retry-After, never liveness', async (t) => {
  const app = await build(t, { env: { MAX_EVENT_LOOP_DELAY_MS: '50' } })
  const deadline = Date.now() + 30_000
  let shed = await app.inject({ method: 'GET', url: '/api/v1/agents' })
  while (shed.statusCode !== 503 && Date.now() < deadline) {
    blockEventLoop(300)
    shed = await app.inject({ method: 'GET', url: '/api/v1/agents' })
  }
  const live = await app.inject({ method: 'GET', url: '/health/live' })
  const token = await app.inject({ method: 'POST', url: '/api/v1/token', payload: { grant_type: 'client_credentials' } })

  t.equal(shed.statusCode, 503, 'the API is shed')
  t.equal(shed.headers['retry-after'], '5')
  t.match(shed.headers['content-type'], /^application\/problem\+json/)
  t.match(shed.json(), { code: 'SERVICE_UNAVAILABLE', detail: /overloaded/ })
  t.equal(live.statusCode, 200, 'liveness is never shed')
  t.same(live.json(), { status: 'ok' })
  if (token.statusCode === 503) {
    t.same(token.json(), { error: 'temporarily_unavailable', error_description: 'the service is temporarily unavailable' }, 'the OAuth endpoint answers in RFC 6749 form')
    t.equal(token.headers['retry-after'], '5')
  } else {
    // the next sample may already show the loop recovered: then the request is served as usual
    t.equal(token.statusCode, 401, 'served normally once the lag is gone')
  }
})

t.test('with MAX_EVENT_LOOP_DELAY_MS=0 nothing is shed however the loop lags', async (t) => {
  const app = await build(t, { env: { MAX_EVENT_LOOP_DELAY_MS: '0' } })
  for (let attempt = 0; attempt < 4; attempt += 1) {
    blockEventLoop(300)
    const response = await app.inject({ method: 'GET', url: '/api/v1/agents' })
    t.equal(response.statusCode, 401, 'answered (401: no token), not shed')
  }
  t.notOk(app.hasDecorator('isUnderPressure'), 'the load-shedding plugin is not registered')
})
