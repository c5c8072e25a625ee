import { randomUUID } from 'node:crypto'
import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { buildApp } from '../../app.js'
import { build, createSchema, LogCapture, testConfig, type TestApp } from '../helper.js'
import { accessToken, basic, bootstrapClient, credentialsUrl, INTROSPECT, oauthPost, registerClient, requestToken } from '../routes/oauth/support.js'

/**
 * The request log: exactly one JSON line per request when it completes, with request id, method,
 * route pattern, status, duration and the authenticated agent; Fastify's own request lines are
 * gone; secrets never appear, wherever they are put; a 5xx logs its error once, with the stack;
 * NODE_ENV=test is quiet.
 */

interface Line {
  level: string
  msg: string
  reqId?: string
  method?: string
  url?: string
  route?: string
  statusCode?: number
  durationMs?: number
  agentId?: string
  error?: string
  err?: { stack?: string, message?: string }
  [key: string]: unknown
}

const logs = new LogCapture()
const app = await build(t, { logStream: logs })
const lines = () => logs.lines.map((line) => JSON.parse(line) as Line)
const responses: LightMyRequestResponse[] = []
const sensitive: string[] = []

async function call (response: Promise<LightMyRequestResponse>): Promise<LightMyRequestResponse> {
  const res = await response
  responses.push(res)
  return res
}

t.test('a session of requests', async (t) => {
  const admin = await bootstrapClient(app)
  sensitive.push(admin.secret, admin.token)
  const client = await registerClient(app, admin.headers, { capabilities: ['docs:read', 'tokens:read'] })
  sensitive.push(client.secret)
  logs.lines.length = 0

  const issued = await call(requestToken(app, client))
  t.equal(issued.statusCode, 200)
  const token = issued.json().access_token as string
  sensitive.push(token, basic(client.agentId, client.secret).slice('Basic '.length))
  const posted = await call(requestToken(app, client, { auth: 'post', json: true }))
  sensitive.push(posted.json().access_token as string)
  const wrong = `${client.secret.slice(0, -6)}AAAAAA`
  sensitive.push(wrong)
  t.equal((await call(requestToken(app, { agentId: client.agentId, secret: wrong }, { auth: 'post' }))).statusCode, 401)
  t.equal((await call(oauthPost(app, INTROSPECT, { fields: { token }, headers: { authorization: `Bearer ${token}` } }))).statusCode, 200)
  t.equal((await call(app.inject({ method: 'GET', url: `/api/v1/agents/${client.agentId}?access_token=${token}`, headers: { authorization: `Bearer ${token}`, cookie: `session=${token}` } }))).statusCode, 200)
  t.equal((await call(app.inject({ method: 'GET', url: `/api/v1/agents/${randomUUID()}`, headers: admin.headers }))).statusCode, 404)
  t.equal((await call(app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: 'Bearer not.a.token' } }))).statusCode, 401)
  t.equal((await call(app.inject({ method: 'GET', url: '/no/such/path' }))).statusCode, 404)
  t.equal((await call(app.inject({ method: 'GET', url: '/api/v1/agents/%E0%A4%A' }))).statusCode, 400)
  t.equal((await call(app.inject({ method: 'GET', url: '/api/v1/agents', headers: { ...admin.headers, 'x-request-id': 'caller-id-7' } }))).statusCode, 200)
  const rotated = await call(app.inject({ method: 'POST', url: `${credentialsUrl(client.agentId)}/${client.credentialId}/rotate`, headers: admin.headers }))
  sensitive.push(rotated.json().clientSecret as string)
})

t.test('exactly one line per request, on completion, under its request id', async (t) => {
  const completed = lines().filter((line) => line.msg === 'request completed')
  t.equal(completed.length, responses.length, `${responses.length} requests, ${completed.length} completion lines`)
  for (const res of responses) {
    const id = String(res.headers['x-request-id'])
    const own = lines().filter((line) => line.reqId === id)
    t.equal(own.length, 1, `request ${id} (${res.statusCode}) wrote one line`)
    t.equal(own[0]?.statusCode, res.statusCode, 'with its status')
  }
  t.notOk(lines().some((line) => line.msg === 'incoming request' || /^Route .* not found$/.test(line.msg)), 'none of Fastify\'s own request lines')
  t.equal(lines().find((line) => line.reqId === 'caller-id-7')?.route, '/api/v1/agents', 'a caller\'s x-request-id is the line\'s reqId')
})

t.test('each line carries method, path, route pattern, status, duration and the authenticated agent', async (t) => {
  const completed = lines().filter((line) => line.msg === 'request completed')
  for (const line of completed) {
    t.match(line, { level: 'info', reqId: String, method: String, url: String, route: String, statusCode: Number, durationMs: Number }, `${line.method} ${line.url}`)
    t.ok((line.durationMs ?? -1) >= 0, 'a duration in ms')
    t.notOk(line.url?.includes('?'), 'the path only, never the query string')
  }
  const tokenLines = completed.filter((line) => line.route === '/api/v1/token')
  t.equal(tokenLines.length, 3)
  const [issued, posted, refused] = tokenLines
  t.match(issued, { method: 'POST', statusCode: 200, agentId: /^[0-9a-f-]{36}$/ }, 'a token request names the authenticated client')
  t.equal(posted.agentId, issued.agentId)
  t.match(refused, { statusCode: 401, error: 'invalid_client' }, 'a refusal names its error code')
  t.equal(refused.agentId, undefined, 'a failed authentication names no agent')
  const read = completed.find((line) => line.route === '/api/v1/agents/:agentId' && line.statusCode === 200)
  t.match(read, { method: 'GET', agentId: issued.agentId }, 'a Bearer call names the token\'s agent, under the route pattern')
  t.match(completed.find((line) => line.url === '/no/such/path'), { route: '__not_found__', statusCode: 404, error: 'NOT_FOUND' })
  t.match(completed.find((line) => line.statusCode === 400), { route: '__not_found__', error: 'FST_ERR_BAD_URL' }, 'a malformed path is logged too')
  t.match(completed.find((line) => line.statusCode === 401 && line.route === '/api/v1/agents'), { error: 'UNAUTHORIZED' })
})

t.test('zero secrets: no client secret, token, Authorization or cookie value in any line', async (t) => {
  t.ok(sensitive.length >= 7, `${sensitive.length} values looked for`)
  for (const value of sensitive) t.notOk(logs.text.includes(value), `${value.slice(0, 10)}… is not logged`)
  for (const token of sensitive.filter((value) => value.startsWith('eyJ'))) t.notOk(logs.text.includes(token.split('.')[2]), 'not even a signature')
  t.notMatch(logs.text, /sk_live_[A-Za-z0-9_-]{8}/, 'nothing shaped like a client secret')
  t.notMatch(logs.text, /eyJ[\w-]+\.eyJ[\w-]+\./, 'nothing shaped like a JWT')
})

t.test('secrets put anywhere in a log call are blanked, at any depth and in any field', async (t) => {
  logs.lines.length = 0
  const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl'
  app.log.info({
    client_secret: 'top-level-secret-1',
    body: { clientSecret: 'nested-secret-2', form: { access_token: 'deep-token-3', list: [{ token: 'in-array-4' }] } },
    request: { headers: { authorization: 'Basic dXNlcjpwYXNzd29yZA==', Cookie: 'sid=cookie-value-5', 'Proxy-Authorization': 'Bearer proxy-6' } },
    a: { b: { c: { d: { e: { refresh_token: 'very-deep-7', password: 'pw-8', secrets: ['s-9'] } } } } },
    config: { JWT_PRIVATE_KEY: 'pem-10', METRICS_TOKEN: 'metrics-11', DATABASE_URL: 'postgres://u:pw-12@h/db' },
    note: `forwarded: Bearer ${jwt} and sk_live_AbCdEfGh123456789`,
    tokenTypeHint: 'access_token'
  }, `caller sent ${jwt}`)
  const text = logs.text
  for (const leaked of ['top-level-secret-1', 'nested-secret-2', 'deep-token-3', 'in-array-4', 'dXNlcjpwYXNzd29yZA', 'cookie-value-5', 'proxy-6',
    'very-deep-7', 'pw-8', 's-9', 'pem-10', 'metrics-11', 'pw-12', jwt, 'AbCdEfGh123456789']) {
    t.notOk(text.includes(leaked), `${leaked} is blanked`)
  }
  const line = JSON.parse(logs.lines[0]) as Record<string, unknown>
  t.equal(line.client_secret, '[redacted]')
  t.same((line.body as Record<string, unknown>).clientSecret, '[redacted]')
  t.equal(line.tokenTypeHint, 'access_token', 'a key merely mentioning tokens is kept')
  t.match(line.msg, /^caller sent \[redacted-jwt\]$/)
})

t.test('a 5xx logs its error once, with the stack, beside its one completion line', async (t) => {
  const captured = new LogCapture()
  const { databaseUrl } = await createSchema(t)
  const failing = await buildApp({ config: testConfig(databaseUrl, { LOG_LEVEL: 'info' }), logStream: captured })
  failing.get('/boom', { schema: { tags: ['operations'], operationId: 'boom' } }, async function boom () {
    throw new Error('kaput: an unexpected failure')
  })
  t.teardown(() => failing.close())
  await failing.ready()
  const res = await failing.inject({ method: 'GET', url: '/boom' })
  t.equal(res.statusCode, 500)
  t.notMatch(res.body, /kaput/, 'the answer carries no internals')
  const own = captured.lines.map((line) => JSON.parse(line) as Line).filter((line) => line.reqId === res.headers['x-request-id'])
  const errors = own.filter((line) => line.err !== undefined)
  t.equal(errors.length, 1, 'the error is logged once')
  t.equal(errors[0]?.level, 'error', 'at error level')
  t.match(errors[0]?.err?.stack, /kaput: an unexpected failure\n\s+at (Object\.)?boom /, 'with its stack')
  t.match(own.filter((line) => line.msg === 'request completed'), [{ statusCode: 500, level: 'warn', error: 'INTERNAL_ERROR', route: '/boom' }], 'and one completion line')
  t.equal(own.length, 2, 'nothing else')

  const client = captured.lines.length
  const refused = await failing.inject({ method: 'GET', url: '/api/v1/agents/' + randomUUID() })
  // the request's own lines: a loaded machine may add a connection-level warning of its own (a Redis
  // command that timed out), which belongs to no request
  const refusal = captured.lines.slice(client).map((line) => JSON.parse(line) as Line).filter((line) => line.reqId === refused.headers['x-request-id'])
  t.equal(refusal.length, 1, 'a 4xx writes only its completion line')
  t.equal(refusal[0].err, undefined, 'without a stack')
})

t.test('NODE_ENV=test is quiet: no line at all by default', async (t) => {
  const captured = new LogCapture()
  const { databaseUrl } = await createSchema(t)
  const quiet = await buildApp({ config: testConfig(databaseUrl), logStream: captured }) as TestApp
  t.teardown(() => quiet.close())
  await quiet.ready()
  await quiet.inject({ method: 'GET', url: '/health' })
  await quiet.inject({ method: 'GET', url: '/api/v1/agents' })
  await quiet.inject({ method: 'GET', url: '/nowhere' })
  t.same(captured.lines, [])
})

t.test('health checks and scrapes are logged only when they fail', async (t) => {
  logs.lines.length = 0
  await app.inject({ method: 'GET', url: '/health' })
  await app.inject({ method: 'GET', url: '/metrics' })
  t.same(logs.lines, [], 'a 200 from /health or /metrics writes nothing')
})

t.test('token requests log nothing else: no line from the token endpoint\'s collaborators', async (t) => {
  const admin = await bootstrapClient(app)
  const client = await registerClient(app, admin.headers)
  logs.lines.length = 0
  await accessToken(app, client)
  t.equal(logs.lines.length, 1)
})
