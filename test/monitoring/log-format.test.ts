import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test as Tap } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../app.js'
import { loadConfig } from '../../plugins/config.js'
import { projectRoot } from '../../lib/paths.js'
import { validTraceparent } from '../../lib/logger.js'
import { build, createSchema, LogCapture, testConfig, testEnv } from '../helper.js'
import { bootstrapClient } from '../routes/oauth/support.js'
import { waitFor } from '../support/private-services.js'

/**
 * The shape of every log line, as a log pipeline reads it: the level as a label, an ISO-8601 time,
 * the service and its version; LOG_FORMAT=gcp as Cloud Logging reads it (severity, message); a
 * caller's well-formed W3C traceparent on its request's completion line; pretty lines for a
 * terminal in dev mode. Redaction holds in every format.
 */

type Line = Record<string, unknown>

const VERSION = (JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string }).version
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736'
const PARENT_ID = '00f067aa0ba902b7'
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_ID}-01`

const parse = (capture: LogCapture): Line[] => capture.lines.map((line) => JSON.parse(line) as Line)

/** The one completion line written for the request answered with `requestId`. */
function completionOf (capture: LogCapture, requestId: unknown, messageKey = 'msg'): Line | undefined {
  return parse(capture).find((line) => line.reqId === requestId && line[messageKey] === 'request completed')
}

/** A gcp-format app with a route that throws, so that its lines include an error with a stack. */
async function gcpAppWithFailingRoute (t: Tap, logs: LogCapture): Promise<FastifyInstance> {
  const { databaseUrl } = await createSchema(t)
  const app = await buildApp({ config: testConfig(databaseUrl, { LOG_FORMAT: 'gcp', LOG_LEVEL: 'info' }), logStream: logs })
  app.get('/boom', { schema: { tags: ['operations'], operationId: 'boom' } }, async function boom () {
    throw new Error('kaput')
  })
  t.teardown(() => app.close())
  await app.ready()
  return app
}

t.test('json (the default): level label, ISO time, service and version on every line', async (t) => {
  const logs = new LogCapture()
  const app = await build(t, { logStream: logs })
  app.log.warn({ detail: 1 }, 'a warning')
  await app.inject({ method: 'GET', url: '/api/v1/agents' })
  await app.inject({ method: 'GET', url: '/nowhere' })

  const lines = parse(logs)
  t.ok(lines.length >= 3, `${lines.length} lines`)
  for (const line of lines) {
    t.match(line, { level: /^(trace|debug|info|warn|error|fatal)$/, time: ISO_TIME, service: 'agentidp', version: VERSION, msg: String },
      `${String(line.msg)}: labelled level, ISO time, service, version`)
    t.ok(Math.abs(Date.parse(line.time as string) - Date.now()) < 60_000, 'the time is now, in UTC')
    t.notOk('severity' in line || 'message' in line, 'no Cloud Logging fields')
  }
  t.match(lines.find((line) => line.msg === 'a warning'), { level: 'warn', detail: 1 })
  t.match(lines.find((line) => line.url === '/api/v1/agents'), { level: 'info', msg: 'request completed', statusCode: 401 })
})

t.test('gcp: severity and message as Cloud Logging reads them, every other field kept', async (t) => {
  const logs = new LogCapture()
  const app = await gcpAppWithFailingRoute(t, logs)
  app.log.info({ detail: 2 }, 'an info line')
  app.log.debug('below the level: not written')
  app.log.fatal('a fatal line')
  const refused = await app.inject({ method: 'GET', url: '/api/v1/agents' })
  const failed = await app.inject({ method: 'GET', url: '/boom' })

  const lines = parse(logs)
  for (const line of lines) {
    t.match(line, { severity: /^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$/, message: String, time: ISO_TIME, service: 'agentidp', version: VERSION },
      `${String(line.message)}: severity, message, ISO time, service, version`)
    t.notOk('msg' in line, 'the text is under message only')
  }
  t.match(lines.find((line) => line.message === 'an info line'), { severity: 'INFO', level: 'info', detail: 2 })
  t.match(lines.find((line) => line.message === 'a fatal line'), { severity: 'CRITICAL' })
  t.notOk(lines.some((line) => line.message === 'below the level: not written'))
  t.match(completionOf(logs, refused.headers['x-request-id'], 'message'),
    { severity: 'INFO', statusCode: 401, route: '/api/v1/agents', error: 'UNAUTHORIZED', durationMs: Number })
  const own = lines.filter((line) => line.reqId === failed.headers['x-request-id'])
  t.match(own.find((line) => line.err !== undefined), { severity: 'ERROR', message: 'request failed', err: { stack: /kaput/ } }, 'a 5xx error is ERROR, with its stack')
  t.match(completionOf(logs, failed.headers['x-request-id'], 'message'), { severity: 'WARNING', statusCode: 500 }, 'a 5xx completion is WARNING')
})

t.test('a well-formed traceparent is on its request\'s completion line; none without one', async (t) => {
  const json = new LogCapture()
  const gcp = new LogCapture()
  const jsonApp = await build(t, { logStream: json })
  const gcpApp = await build(t, { logStream: gcp, env: { LOG_FORMAT: 'gcp' } })

  const traced = await jsonApp.inject({ method: 'GET', url: '/api/v1/agents', headers: { traceparent: TRACEPARENT } })
  const untraced = await jsonApp.inject({ method: 'GET', url: '/api/v1/agents' })
  t.equal(completionOf(json, traced.headers['x-request-id'])?.traceparent, TRACEPARENT, 'json: echoed as traceparent')
  t.notOk('traceId' in (completionOf(json, traced.headers['x-request-id']) ?? {}), 'json: traceparent only')
  t.notOk('traceparent' in (completionOf(json, untraced.headers['x-request-id']) ?? { traceparent: 'missing line' }), 'no header, no field')

  const gcpTraced = await gcpApp.inject({ method: 'GET', url: '/api/v1/agents', headers: { traceparent: TRACEPARENT } })
  const gcpUntraced = await gcpApp.inject({ method: 'GET', url: '/api/v1/agents' })
  t.match(completionOf(gcp, gcpTraced.headers['x-request-id'], 'message'), { traceparent: TRACEPARENT, traceId: TRACE_ID }, 'gcp: traceparent and the bare trace id')
  t.notOk('logging.googleapis.com/trace' in (completionOf(gcp, gcpTraced.headers['x-request-id'], 'message') ?? {}),
    'no trace resource name: it needs a project id the IdP does not have')
  const plain = completionOf(gcp, gcpUntraced.headers['x-request-id'], 'message') ?? { traceId: 'missing line' }
  t.notOk('traceparent' in plain || 'traceId' in plain, 'gcp: no header, no trace fields')
})

t.test('a malformed traceparent is ignored and never written', async (t) => {
  const logs = new LogCapture()
  const app = await build(t, { logStream: logs, env: { LOG_FORMAT: 'gcp' } })
  const malformed = {
    'upper-case hex': TRACEPARENT.toUpperCase(),
    'version ff': `ff-${TRACE_ID}-${PARENT_ID}-01`,
    'all-zero trace id': `00-${'0'.repeat(32)}-${PARENT_ID}-01`,
    'all-zero parent id': `00-${TRACE_ID}-${'0'.repeat(16)}-01`,
    'short trace id': `00-${TRACE_ID.slice(1)}-${PARENT_ID}-01`,
    'version 00 with more fields': `${TRACEPARENT}-extra`,
    'a later version without a dash after the flags': `01-${TRACE_ID}-${PARENT_ID}-01x`,
    'two headers folded into one': `${TRACEPARENT}, ${TRACEPARENT}`,
    'not one at all': 'sk_live_notatraceparentbutasecret'
  }
  for (const [label, header] of Object.entries(malformed)) {
    const res = await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { traceparent: header } })
    const line = completionOf(logs, res.headers['x-request-id'], 'message')
    t.ok(line !== undefined, `${label}: the request is logged`)
    t.notOk(line !== undefined && ('traceparent' in line || 'traceId' in line), `${label}: without trace fields`)
  }
  t.notOk(logs.text.includes('notatraceparent'), 'a malformed value never reaches a line')
})

t.test('traceparent validation follows W3C Trace Context', async (t) => {
  t.equal(validTraceparent(TRACEPARENT), TRACEPARENT)
  t.equal(validTraceparent(`00-${TRACE_ID}-${PARENT_ID}-00`), `00-${TRACE_ID}-${PARENT_ID}-00`, 'not sampled is still valid')
  t.equal(validTraceparent(`cc-${TRACE_ID}-${PARENT_ID}-01-what-the-future-holds`), `cc-${TRACE_ID}-${PARENT_ID}-01`,
    'a later version is read by its first four fields, and only those are kept')
  t.equal(validTraceparent(`cc-${TRACE_ID}-${PARENT_ID}-01`), `cc-${TRACE_ID}-${PARENT_ID}-01`)
  for (const header of [undefined, '', ['a', 'b'], TRACEPARENT.slice(0, -1), ` ${TRACEPARENT}`, `00_${TRACE_ID}_${PARENT_ID}_01`, `0-${TRACE_ID}-${PARENT_ID}-01`]) {
    t.equal(validTraceparent(header), undefined, JSON.stringify(header))
  }
})

t.test('redaction holds in the gcp format: no secret, token or Authorization value', async (t) => {
  const logs = new LogCapture()
  const app = await build(t, { logStream: logs, env: { LOG_FORMAT: 'gcp' } })
  const admin = await bootstrapClient(app)
  const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl'
  app.log.error({ client_secret: 'gcp-secret-1', nested: { authorization: 'Basic Z2NwOnNlY3JldA==', accessToken: 'gcp-token-2' } },
    `caller sent ${jwt} and sk_live_GcpSecretShape123`)
  await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { ...admin.headers, traceparent: TRACEPARENT } })
  await app.inject({ method: 'GET', url: `/api/v1/agents?access_token=${admin.token}`, headers: { authorization: `Bearer ${admin.token}` } })

  for (const leaked of ['gcp-secret-1', 'Z2NwOnNlY3JldA', 'gcp-token-2', jwt, 'GcpSecretShape123', admin.token, admin.secret]) {
    t.notOk(logs.text.includes(leaked), `${leaked.slice(0, 12)}… is not written`)
  }
  const line = parse(logs).find((entry) => entry.client_secret !== undefined)
  t.match(line, { severity: 'ERROR', client_secret: '[redacted]', message: /^caller sent \[redacted-jwt\] and sk_live_\[redacted\]$/ },
    'blanked by key, and by shape inside message')
  t.ok(parse(logs).some((entry) => entry.traceparent === TRACEPARENT), 'the trace fields pass through redaction unchanged')
})

t.test('pretty (dev mode only): human-readable lines, made from the redacted line', async (t) => {
  const logs = new LogCapture()
  const { databaseUrl } = await createSchema(t)
  const config = loadConfig(testEnv(databaseUrl, { LOG_FORMAT: 'pretty', LOG_LEVEL: 'info' }), { embedded: true, cachePrefix: 'test:pretty:' })
  const app = await buildApp({ config, logStream: logs })
  t.teardown(() => app.close())
  await app.ready()
  app.log.info({ client_secret: 'pretty-secret-1' }, 'caller sent Bearer pretty-token-2')
  await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { traceparent: TRACEPARENT } })
  // pino-pretty is a stream that writes on a later turn
  await waitFor('the pretty completion line', () => logs.text.includes('request completed'), 10_000, 10)

  t.ok(logs.lines.length > 0, 'lines were written')
  t.notOk(logs.lines.some((line) => line.trimStart().startsWith('{')), 'no JSON lines')
  t.match(logs.text, /INFO.*request completed/, 'level and message, readable')
  t.match(logs.text, /traceparent: "00-4bf92f/, 'fields below the message')
  t.notOk(logs.text.includes('pretty-secret-1') || logs.text.includes('pretty-token-2'), 'secrets blanked before prettifying')
})
