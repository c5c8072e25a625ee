import t from 'tap'
import { register as globalRegistry } from 'prom-client'
import { build } from '../helper.js'
import { cappedLabel, methodLabel, redisCommand, routeLabel, sqlOperation } from '../../lib/metric-labels.js'
import { scrape, valueOf } from '../monitoring/support.js'

/**
 * plugins/metrics.ts: a registry per app (prom-client's global one untouched), GET /metrics as a
 * documented route, METRICS_ENABLED=false, the METRICS_TOKEN restriction, and the label mappings
 * that keep every label's set of values bounded.
 */

const METRICS_TOKEN = 'm'.repeat(24) + '0123456789abcdef'

t.test('each app has its own registry; prom-client\'s global registry stays empty', async (t) => {
  const one = await build(t)
  const two = await build(t)
  await one.inject({ method: 'GET', url: '/health' })
  await one.inject({ method: 'GET', url: '/health' })
  await two.inject({ method: 'GET', url: '/health' })
  const health = { method: 'GET', route: '/health', status_code: '200' }
  t.equal(valueOf(await scrape(one), 'agentidp_http_requests_total', health), 2, 'the first app counts its own two')
  t.equal(valueOf(await scrape(two), 'agentidp_http_requests_total', health), 1, 'the second its one')
  t.same(await globalRegistry.getMetricsAsJSON(), [], 'nothing in the global registry')
})

t.test('GET /metrics is documented like every route', async (t) => {
  const app = await build(t)
  const document = (await app.inject({ method: 'GET', url: '/docs/json' })).json() as { paths: Record<string, Record<string, { operationId?: string, tags?: string[], responses?: Record<string, unknown> }>> }
  const operation = document.paths['/metrics']?.get
  t.equal(operation?.operationId, 'getMetrics')
  t.same(operation?.tags, ['operations'])
  t.ok(operation?.responses?.['200'] !== undefined && operation.responses['401'] !== undefined, '200 and 401 documented')
})

t.test('METRICS_ENABLED=false: no /metrics, nothing collected, features unaffected', async (t) => {
  const app = await build(t, { env: { METRICS_ENABLED: 'false' } })
  t.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 404)
  t.equal(app.metrics, undefined, 'no app.metrics: reporting is a no-op')
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200)
  const document = (await app.inject({ method: 'GET', url: '/docs/json' })).json() as { paths: Record<string, unknown> }
  t.notOk('/metrics' in document.paths, 'and not documented')
})

t.test('METRICS_TOKEN: /metrics answers only to Authorization: Bearer <METRICS_TOKEN>', async (t) => {
  const app = await build(t, { env: { METRICS_TOKEN } })
  const none = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(none.statusCode, 401)
  t.match(none.headers['content-type'], /^application\/problem\+json/)
  t.equal(none.headers['www-authenticate'], 'Bearer')
  t.notMatch(none.body, /agentidp_/, 'no metrics in the refusal')
  const wrong = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${METRICS_TOKEN.slice(0, -1)}x` } })
  t.equal(wrong.statusCode, 401)
  t.match(wrong.headers['www-authenticate'], /^Bearer error="invalid_token"/)
  t.equal((await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Basic ${METRICS_TOKEN}` } })).statusCode, 401, 'not as Basic')
  const right = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${METRICS_TOKEN}` } })
  t.equal(right.statusCode, 200)
  t.match(right.body, /^agentidp_http_requests_total\{method="GET",route="\/metrics",status_code="401"\} 3$/m, 'the refusals are counted')
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200, 'other routes are unaffected')
})

t.test('METRICS_TOKEN must be long and header-safe', async (t) => {
  await t.rejects(build(t, { env: { METRICS_TOKEN: 'short' } }), /METRICS_TOKEN is malformed/)
  await t.rejects(build(t, { env: { METRICS_TOKEN: `${'x'.repeat(32)} y` } }), /METRICS_TOKEN is malformed/)
})

t.test('label mappings keep every label bounded', async (t) => {
  t.equal(methodLabel('GET'), 'GET')
  t.equal(methodLabel('PROPFIND'), 'OTHER', 'methods no route serves share one value')
  t.equal(routeLabel('/api/v1/agents/:agentId', false), '/api/v1/agents/:agentId')
  t.equal(routeLabel(undefined, false), '__not_found__')
  t.equal(routeLabel('/*', true), '__not_found__', 'the 404 handler\'s wildcard too')

  t.equal(sqlOperation({ name: 'find-token-state', text: 'SELECT 1', values: [] }), 'find-token-state', 'a named statement by its name')
  t.equal(sqlOperation({ text: 'INSERT INTO x VALUES (1)' }), 'insert', 'an unnamed config by its verb')
  t.equal(sqlOperation('  -- why\n/* block */ (SELECT 1) UNION (SELECT 2)'), 'select', 'after comments and parentheses')
  t.equal(sqlOperation('WITH a AS (SELECT 1) UPDATE t SET x = 1'), 'with')
  t.equal(sqlOperation('BEGIN'), 'begin')
  t.equal(sqlOperation('COMMIT'), 'commit')
  t.equal(sqlOperation('frobnicate the table'), 'other', 'an unknown verb')
  t.equal(sqlOperation({ name: 'has spaces; DROP', text: 'DELETE FROM t' }), 'delete', 'a malformed name falls back to the verb')
  t.equal(sqlOperation(undefined), 'other')

  t.equal(redisCommand('evalsha'), 'evalsha')
  t.equal(redisCommand('PING'), 'ping', 'lower-case')
  t.equal(redisCommand('x'.repeat(40)), 'other')
  t.equal(redisCommand(42), 'other')

  const capped = cappedLabel(2)
  t.same(['a', 'b', 'c', 'a', 'd', 'b'].map(capped), ['a', 'b', 'other', 'a', 'other', 'b'])
})
