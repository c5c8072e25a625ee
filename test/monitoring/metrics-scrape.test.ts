import { randomBytes, randomUUID } from 'node:crypto'
import t from 'tap'
import { build } from '../helper.js'
import { accessToken, bootstrapClient, credentialsUrl, registerClient, requestToken, TOKEN } from '../routes/oauth/support.js'
import { labelValues, scrape, valueOf, type Scrape } from './support.js'

/**
 * GET /metrics after real traffic: each of the six metrics with its labels and exact counts, and
 * bounded label sets after a storm of requests to random URLs.
 */

const app = await build(t)
const admin = await bootstrapClient(app)
const TOKENS = 'agentidp_tokens_issued_total'
const AGENTS = 'agentidp_agents_registered_total'
const REQUESTS = 'agentidp_http_requests_total'
const DURATION = 'agentidp_http_request_duration_seconds'
const DB = 'agentidp_db_query_duration_seconds'
const REDIS = 'agentidp_redis_command_duration_seconds'

t.test('/metrics is Prometheus text, needs no access token, and is not cached', async (t) => {
  const res = await app.inject({ method: 'GET', url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.equal(res.headers['cache-control'], 'no-store')
  for (const name of [TOKENS, AGENTS, REQUESTS, DURATION, DB, REDIS]) {
    t.match(res.body, new RegExp(`^# TYPE ${name} (counter|histogram)$`, 'm'), `declares ${name}`)
  }
  t.match(res.body, /^# TYPE agentidp_tokens_issued_total counter$/m)
  t.match(res.body, /^# TYPE agentidp_http_request_duration_seconds histogram$/m)
  t.match(res.body, /^process_cpu_seconds_total /m, 'default process metrics')
  t.match(res.body, /^nodejs_heap_size_used_bytes /m, 'default Node.js metrics')
  t.equal(res.body.match(/^# TYPE agentidp_/gm)?.length, 6, 'exactly six product metrics')
})

t.test('3 tokens issued with scope docs:read count +3 under scope="docs:read"; a two-scope token counts under each', async (t) => {
  const client = await registerClient(app, admin.headers, { capabilities: ['docs:read', 'docs:write'] })
  const before = await scrape(app)
  for (let i = 0; i < 3; i += 1) await accessToken(app, client, { fields: { scope: 'docs:read' } })
  await accessToken(app, client, { fields: { scope: 'docs:read docs:write' } })
  const refused = await requestToken(app, { agentId: client.agentId, secret: `${client.secret.slice(0, -4)}AAAA` }, { fields: { scope: 'docs:read' } })
  t.equal(refused.statusCode, 401, 'a failed authentication issues nothing')
  const after = await scrape(app)

  t.equal(valueOf(after, TOKENS, { scope: 'docs:read' }) - valueOf(before, TOKENS, { scope: 'docs:read' }), 4, 'docs:read: 3 + 1')
  t.equal(valueOf(after, TOKENS, { scope: 'docs:write' }) - valueOf(before, TOKENS, { scope: 'docs:write' }), 1, 'docs:write: 1')
  const tokenRoute = { method: 'POST', route: TOKEN }
  t.equal(valueOf(after, REQUESTS, { ...tokenRoute, status_code: '200' }) - valueOf(before, REQUESTS, { ...tokenRoute, status_code: '200' }), 4, '4 token responses 200')
  t.equal(valueOf(after, REQUESTS, { ...tokenRoute, status_code: '401' }) - valueOf(before, REQUESTS, { ...tokenRoute, status_code: '401' }), 1, '1 token response 401')
  t.equal(valueOf(after, `${DURATION}_count`, { ...tokenRoute, status_code: '200' }) - valueOf(before, `${DURATION}_count`, { ...tokenRoute, status_code: '200' }), 4,
    'the histogram observed the same 4 requests')
  t.ok(valueOf(after, `${DURATION}_sum`, { ...tokenRoute, status_code: '200' }) > valueOf(before, `${DURATION}_sum`, { ...tokenRoute, status_code: '200' }), 'with a duration')
  t.equal(valueOf(after, `${DURATION}_bucket`, { ...tokenRoute, status_code: '200', le: '+Inf' }), valueOf(after, `${DURATION}_count`, { ...tokenRoute, status_code: '200' }), 'le="+Inf" = count')
  t.same(labelValues(after, `${DURATION}_bucket`, 'le'), ['+Inf', '0.005', '0.01', '0.025', '0.05', '0.1', '0.25', '0.5', '1', '2.5'].sort(), 'buckets 5 ms – 2.5 s')
})

t.test('agents registered count by deployment_env', async (t) => {
  const before = await scrape(app)
  await registerClient(app, admin.headers, { deploymentEnv: 'staging' })
  await registerClient(app, admin.headers, { deploymentEnv: 'staging' })
  await registerClient(app, admin.headers, { deploymentEnv: 'production' })
  const duplicate = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: admin.headers, payload: { email: 'dup@example.com', agentType: 'router', version: '1.0.0', capabilities: ['docs:read'], owner: 'o', deploymentEnv: 'development' } })
  t.equal(duplicate.statusCode, 201)
  const again = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: admin.headers, payload: { email: 'dup@example.com', agentType: 'router', version: '1.0.0', capabilities: ['docs:read'], owner: 'o', deploymentEnv: 'development' } })
  t.equal(again.statusCode, 409, 'a refused registration counts nothing')
  const after = await scrape(app)
  const delta = (env: string) => valueOf(after, AGENTS, { deployment_env: env }) - valueOf(before, AGENTS, { deployment_env: env })
  t.equal(delta('staging'), 2)
  t.equal(delta('production'), 1)
  t.equal(delta('development'), 1)
  const created = { method: 'POST', route: '/api/v1/agents' }
  t.equal(valueOf(after, REQUESTS, { ...created, status_code: '201' }) - valueOf(before, REQUESTS, { ...created, status_code: '201' }), 4, 'four 201s by route pattern')
  t.equal(valueOf(after, REQUESTS, { ...created, status_code: '409' }) - valueOf(before, REQUESTS, { ...created, status_code: '409' }), 1, 'one 409')
})

t.test('route labels are patterns: reads of different agents share /api/v1/agents/:agentId', async (t) => {
  const one = await registerClient(app, admin.headers)
  const two = await registerClient(app, admin.headers)
  const before = await scrape(app)
  for (const id of [one.agentId, two.agentId, randomUUID()]) await app.inject({ method: 'GET', url: `/api/v1/agents/${id}`, headers: admin.headers })
  await app.inject({ method: 'GET', url: credentialsUrl(one.agentId), headers: admin.headers })
  const after = await scrape(app)
  const read = { method: 'GET', route: '/api/v1/agents/:agentId' }
  t.equal(valueOf(after, REQUESTS, { ...read, status_code: '200' }) - valueOf(before, REQUESTS, { ...read, status_code: '200' }), 2)
  t.equal(valueOf(after, REQUESTS, { ...read, status_code: '404' }) - valueOf(before, REQUESTS, { ...read, status_code: '404' }), 1, 'an unknown agent: its route pattern, status 404')
  t.equal(valueOf(after, REQUESTS, { method: 'GET', route: '/api/v1/agents/:agentId/credentials', status_code: '200' }), 1)
  t.notOk(after.text.includes(one.agentId), 'no agent id in any label')
})

t.test('PostgreSQL query durations by operation: named statements by name, the rest by SQL verb', async (t) => {
  const client = await registerClient(app, admin.headers)
  const before = await scrape(app)
  const token = await accessToken(app, client)
  await app.inject({ method: 'GET', url: `/api/v1/agents/${client.agentId}`, headers: { authorization: `Bearer ${token}` } })
  const after = await scrape(app)
  const operations = labelValues(after, `${DB}_count`, 'operation')
  for (const named of ['find-client-by-credential', 'record-issuances', 'find-token-state']) {
    t.ok(operations.includes(named), `the named statement ${named}`)
    t.ok(valueOf(after, `${DB}_count`, { operation: named }) > valueOf(before, `${DB}_count`, { operation: named }), `${named} observed by this traffic`)
  }
  for (const verb of ['select', 'insert', 'begin', 'commit']) t.ok(operations.includes(verb), `the verb ${verb}`)
  t.ok(operations.every((operation) => /^[a-z][a-z0-9-]*$/.test(operation)), `only names and verbs: ${operations.join(', ')}`)
  t.ok(valueOf(after, `${DB}_sum`, { operation: 'record-issuances' }) > 0, 'with durations')
})

t.test('Redis command durations by command, lower-case: ping after /health, the rate limiter\'s evalsha, publish', async (t) => {
  const client = await registerClient(app, admin.headers)
  const before = await scrape(app)
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200)
  await accessToken(app, client)
  await app.inject({ method: 'POST', url: `${credentialsUrl(client.agentId)}/${client.credentialId}/rotate`, headers: admin.headers })
  const after = await scrape(app)
  const delta = (command: string) => valueOf(after, `${REDIS}_count`, { command }) - valueOf(before, `${REDIS}_count`, { command })
  t.equal(delta('ping'), 1, 'one ping per /health')
  t.ok(delta('evalsha') >= 1, 'the rate limiter\'s script')
  t.ok(delta('publish') >= 1, 'the client-change broadcast')
  const commands = labelValues(after, `${REDIS}_count`, 'command')
  t.ok(commands.every((command) => command === command.toLowerCase()), `lower-case: ${commands.join(', ')}`)
  t.ok(valueOf(after, `${REDIS}_sum`, { command: 'ping' }) > 0, 'with durations')
})

/** A random path: unknown prefixes, known prefixes with random ids, junk, query strings, bad encodings. */
function randomUrl (i: number): string {
  const id = randomUUID()
  const junk = randomBytes(6).toString('hex')
  const shapes = [
    `/${junk}`, `/${junk}/${id}`, `/api/v1/${junk}`, `/api/v2/agents/${id}`, `/api/v1/agents/${id}/${junk}`,
    `/.well-known/${junk}`, `/docs/${junk}/${id}`, `/metrics/${junk}`, `/health/${junk}?x=${junk}`, `/${junk}%E0%A4%A`,
    `/api/v1/agents/${id}`, `/api/v1/agents/${id}/credentials/${randomUUID()}`
  ]
  return shapes[i % shapes.length]
}

t.test('a storm of 10,000 requests to random URLs adds no label values beyond __not_found__', async (t) => {
  const warm = await scrape(app)
  const methods = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS']
  const before = await scrape(app)
  const seriesBefore = new Set(before.samples.filter((sample) => sample.name.startsWith('agentidp_')).map((sample) => JSON.stringify([sample.name, sample.labels])))
  const statuses = new Map<number, number>()
  for (let i = 0; i < 10_000; i += 1) {
    const res = await app.inject({ method: methods[i % methods.length] as 'GET', url: randomUrl(i) })
    statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
  }
  const after = await scrape(app)
  t.comment(`statuses: ${JSON.stringify(Object.fromEntries(statuses))}`)

  const routes = labelValues(after, REQUESTS, 'route')
  t.ok(routes.includes('__not_found__'), 'unknown paths count under __not_found__')
  t.ok(routes.every((route) => route === '__not_found__' || !/[0-9a-f]{8}-|[0-9a-f]{12}/.test(route)), 'no id or random segment in a route label')
  const newRoutes = routes.filter((route) => !labelValues(warm, REQUESTS, 'route').includes(route))
  t.ok(newRoutes.every((route) => ['__not_found__', '*', '/api/v1/agents/:agentId', '/api/v1/agents/:agentId/credentials/:credentialId', '/metrics', '/health', '/docs/*'].includes(route) || route.startsWith('/docs')),
    `new route values are patterns: ${newRoutes.join(', ')}`)

  const seriesAfter = after.samples.filter((sample) => sample.name.startsWith('agentidp_')).map((sample) => JSON.stringify([sample.name, sample.labels]))
  const added = seriesAfter.filter((series) => !seriesBefore.has(series))
  // every new series is one (method, route pattern, status) combination: bounded by 7 methods × the
  // few patterns and statuses reached, whatever the 10,000 URLs were
  const combinations = new Set(added.filter((series) => series.includes(`"${REQUESTS}"`)))
  t.ok(combinations.size <= 60, `${combinations.size} new request series for 10,000 distinct URLs`)
  t.ok(added.length <= 60 * 14, `${added.length} new series in all`)

  const notFound = after.samples.filter((sample) => sample.name === REQUESTS && sample.labels.route === '__not_found__')
  const countedUnmatched = notFound.reduce((sum, sample) => sum + sample.value, 0) -
    before.samples.filter((sample) => sample.name === REQUESTS && sample.labels.route === '__not_found__').reduce((sum, sample) => sum + sample.value, 0)
  const storm = [...statuses.values()].reduce((sum, count) => sum + count, 0)
  const totalAfter = after.samples.filter((sample) => sample.name === REQUESTS).reduce((sum, sample) => sum + sample.value, 0)
  const totalBefore = before.samples.filter((sample) => sample.name === REQUESTS).reduce((sum, sample) => sum + sample.value, 0)
  t.equal(totalAfter - totalBefore, storm + 1, 'every request of the storm was counted (+ the scrape before it)')
  t.ok(countedUnmatched > 5000, `${countedUnmatched} requests counted under __not_found__`)
  t.notOk(after.text.includes('%E0'), 'no raw URL in any label')
})

t.test('the scope label is capped: past 200 distinct scopes, further ones count as other', async (t) => {
  const metrics = app.metrics
  if (metrics === undefined) return t.fail('metrics are enabled by default')
  for (let i = 0; i < 250; i += 1) metrics.tokensIssued(`capped:scope-${i}`)
  const scraped: Scrape = await scrape(app)
  const scopes = labelValues(scraped, TOKENS, 'scope')
  t.ok(scopes.length <= 200 + 1, `${scopes.length} scope values`)
  t.ok(valueOf(scraped, TOKENS, { scope: 'other' }) >= 50, 'the rest under other')
})
