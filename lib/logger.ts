import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { hostname } from 'node:os'
import { join } from 'node:path'
import { LogController, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import pino, { type LoggerOptions } from 'pino'
import { projectRoot } from './paths.js'
import { redactLine } from './redact.js'
import { routeLabel } from './metric-labels.js'

/**
 * Logs: pino JSON lines on stdout. Each request writes exactly one line when it completes
 * (`request completed`: request id, method, path, route pattern, status, duration, agentId when
 * authenticated, the error code it was answered with, the caller's W3C traceparent); Fastify's own
 * two request lines are off. A 5xx also writes its error once, with the stack (plugins/errors.ts).
 * Every line names its level by label, its time in ISO 8601, the service and its version, so a
 * pipeline needs no pino-specific decoding. Secrets never reach a line: lib/redact.ts blanks them in
 * the finished line, at any depth and in any field, whatever the format (pretty output is made from
 * the already redacted line).
 */

/**
 * - json: the default, for any collector;
 * - gcp: the same line as Cloud Logging reads it from stdout (`severity`, `message`);
 * - pretty: human-readable, for a terminal in dev mode only (pino-pretty is a dev dependency;
 *   plugins/config.ts refuses it elsewhere).
 */
export type LogFormat = 'json' | 'gcp' | 'pretty'

/** What the logger needs of the configuration. */
export interface LogSettings {
  LOG_LEVEL: string
  LOG_FORMAT: LogFormat
}

/** Fixed header paths, blanked by pino itself (cheap: no wildcards); lib/redact.ts covers the rest. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie'
]

const SERVICE = 'agentidp'
// read once: every line names the running release
const VERSION = (JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string }).version

/** Cloud Logging's LogSeverity for each pino level (it has no TRACE; FATAL is its CRITICAL). */
const GCP_SEVERITY: Record<string, string> = {
  trace: 'DEBUG',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARNING',
  error: 'ERROR',
  fatal: 'CRITICAL'
}

/** The one logger configuration; `destination` lets tests capture the lines. */
export function loggerOptions (settings: LogSettings, destination?: NodeJS.WritableStream): FastifyServerOptions['logger'] {
  const options: LoggerOptions = {
    level: settings.LOG_LEVEL,
    base: { service: SERVICE, version: VERSION, pid: process.pid, hostname: hostname() },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    hooks: { streamWrite: redactLine },
    serializers: {
      // the path only: a query string may carry a secret sent where it should not have been
      req (request: { method?: string, url?: string, ip?: string, headers?: Record<string, unknown> }) {
        return {
          method: request.method,
          url: typeof request.url === 'string' ? pathOf(request.url) : undefined,
          remoteAddress: request.ip,
          userAgent: request.headers?.['user-agent']
        }
      }
    },
    ...formatOptions(settings.LOG_FORMAT)
  }
  const stream = settings.LOG_FORMAT === 'pretty' ? prettyStream(destination) : destination ?? bufferedStdout()
  return { ...options, stream }
}

// Lines are written to stdout in blocks instead of one write(2) each: a write to the pipe a log
// collector reads costs the request path a system call and a wake-up of the reader, ≈ 9 % of the
// token endpoint's event-loop time at one line per request (bench/README.md). A block is written
// once it holds LOG_BLOCK_BYTES, and at the latest LOG_FLUSH_MS after its first line, so a quiet
// server's lines don't wait. On exit (process.exit, a fatal error, the end of the event loop)
// pino writes what is pending synchronously; only a SIGKILL can lose the last LOG_FLUSH_MS. A
// collector that stops reading no longer blocks the event loop; past LOG_MAX_PENDING_BYTES waiting,
// lines are dropped rather than the process growing without bound.
// (sonic-boom requires a block smaller than its largest single write, 16 KiB)
const LOG_BLOCK_BYTES = 8 * 1024
const LOG_FLUSH_MS = 100
const LOG_MAX_PENDING_BYTES = 64 * 1024 * 1024
let stdout: ReturnType<typeof pino.destination> | undefined

/** The one buffered stdout of the process, shared by every app it builds (tests build many). */
function bufferedStdout (): NodeJS.WritableStream {
  if (stdout === undefined) {
    const stream = pino.destination({ dest: 1, sync: false, minLength: LOG_BLOCK_BYTES, maxLength: LOG_MAX_PENDING_BYTES })
    setInterval(function flushLogBlock () {
      // a stdout closed under us (EPIPE: the collector went away) is pino's to handle, not a crash here
      try { stream.flush() } catch {}
    }, LOG_FLUSH_MS).unref()
    stdout = stream
  }
  return stdout as unknown as NodeJS.WritableStream
}

function formatOptions (format: LogFormat): LoggerOptions {
  if (format !== 'gcp') {
    return { formatters: { level: (label) => ({ level: label }) } }
  }
  return {
    // Cloud Logging shows `message` as the entry's summary and maps `severity`; `time` (ISO 8601)
    // becomes the entry's timestamp. `level` stays, for queries written against the json format.
    messageKey: 'message',
    formatters: {
      level: (label) => ({ severity: GCP_SEVERITY[label] ?? 'DEFAULT', level: label }),
      log: withTraceId
    }
  }
}

/**
 * Cloud Logging links an entry to a trace only through `logging.googleapis.com/trace`, which must be
 * `projects/PROJECT_ID/traces/TRACE_ID`: the IdP does not know its project, so it writes the bare
 * `traceId` beside `traceparent`, for a query or a log router to join on.
 */
function withTraceId (object: Record<string, unknown>): Record<string, unknown> {
  const traceparent = object.traceparent
  return typeof traceparent === 'string' ? { ...object, traceId: traceparent.slice(3, 35) } : object
}

/**
 * pino-pretty in this process, reading the finished (already redacted) lines: loaded only when
 * asked for, since it is not installed in production.
 */
function prettyStream (destination?: NodeJS.WritableStream): NodeJS.WritableStream {
  const pretty = createRequire(import.meta.url)('pino-pretty') as (options: Record<string, unknown>) => NodeJS.WritableStream
  return pretty({
    destination: destination ?? 1,
    sync: true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'service,version,pid,hostname'
  })
}

const MAX_LOGGED_LENGTH = 256

function pathOf (url: string): string {
  return url.split('?')[0].slice(0, MAX_LOGGED_LENGTH)
}

// W3C Trace Context: version-traceid-parentid-flags, lower-case hex
const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}(-|$)/
const ZERO_TRACE_ID = '0'.repeat(32)
const ZERO_PARENT_ID = '0'.repeat(16)
const TRACEPARENT_LENGTH = 55

/**
 * The caller's `traceparent` header when it is well-formed, else undefined (a malformed one is
 * dropped, as the W3C recommendation says, and never reaches a log line). Version 00 is exactly
 * 55 characters; a later version may append fields after a dash, of which only the four known ones
 * are kept. Version ff and all-zero ids are invalid.
 */
export function validTraceparent (header: unknown): string | undefined {
  if (typeof header !== 'string') return undefined
  const match = TRACEPARENT.exec(header)
  if (match === null) return undefined
  const [, version, traceId, parentId] = match
  if (version === 'ff' || traceId === ZERO_TRACE_ID || parentId === ZERO_PARENT_ID) return undefined
  if (version === '00' && header.length !== TRACEPARENT_LENGTH) return undefined
  return header.slice(0, TRACEPARENT_LENGTH)
}

/** The error code each failed request was answered with, for its completion line. */
const failures = new WeakMap<FastifyRequest, string>()

/** Called by the error handler: the completion line names the code instead of a line of its own. */
export function noteFailure (request: FastifyRequest, code: string): void {
  failures.set(request, code)
}

/**
 * A completed request: its one line, and its report to the metrics, so both agree on every request,
 * its route label and its duration.
 */
export function completeRequest (request: FastifyRequest, reply: FastifyReply, error?: Error | null): void {
  request.server.metrics?.observeRequest(request, reply)
  const level = reply.statusCode >= 500 ? 'warn' : 'info'
  // below the logger's level: no line, so don't build one (the token endpoint at LOG_LEVEL=warn)
  if (pino.levels.values[level] < (pino.levels.values[request.log.level] ?? 0)) return
  const userAgent = request.headers['user-agent']
  const fields = {
    method: request.method,
    url: pathOf(request.url),
    route: routeLabel(request.routeOptions.url, request.is404),
    statusCode: reply.statusCode,
    durationMs: Math.round(reply.elapsedTime * 100) / 100,
    agentId: request.principal?.agentId ?? request.oauthClient?.agentId,
    error: failures.get(request),
    remoteAddress: request.ip,
    userAgent: typeof userAgent === 'string' ? userAgent.slice(0, MAX_LOGGED_LENGTH) : undefined,
    traceparent: validTraceparent(request.headers.traceparent),
    // the response stream failed after the status was sent (a client that went away)
    ...(error === null || error === undefined ? {} : { streamError: error.message })
  }
  // health checks and scrapes (route logLevel `warn`) are written only when they fail
  request.log[level](fields, 'request completed')
}

/**
 * Fastify calls `requestCompleted` once per routed request (404s included), after the onResponse
 * hooks. Its "incoming request" and "Route … not found" lines are dropped: the completion line says
 * all of it. (Requests Fastify refuses before routing never get here: plugins/errors.ts completes them.)
 */
export class RequestLogController extends LogController {
  override incomingRequest (): void {}

  override routeNotFound (): void {}

  override requestCompleted (error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    completeRequest(request, reply, error)
  }
}
