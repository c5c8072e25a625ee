import { LogController, type FastifyReply, type FastifyRequest, type FastifyServerOptions } from 'fastify'
import pino from 'pino'
import { redactLine } from './redact.js'
import { routeLabel } from './metric-labels.js'

/**
 * Logs: pino JSON lines on stdout. Each request writes exactly one line when it completes
 * (`request completed`: request id, method, path, route pattern, status, duration, agentId when
 * authenticated, the error code it was answered with); Fastify's own two request lines are off. A
 * 5xx also writes its error once, with the stack (plugins/errors.ts). Secrets never reach a line:
 * lib/redact.ts blanks them in the finished line, at any depth and in any field.
 */

/** Fixed header paths, blanked by pino itself (cheap: no wildcards); lib/redact.ts covers the rest. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie'
]

/** The one logger configuration; `destination` lets tests capture the lines. */
export function loggerOptions (config: { LOG_LEVEL: string }, destination?: NodeJS.WritableStream): FastifyServerOptions['logger'] {
  return {
    level: config.LOG_LEVEL,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    hooks: { streamWrite: redactLine },
    ...(destination === undefined ? {} : { stream: destination }),
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
    }
  }
}

const MAX_LOGGED_LENGTH = 256

function pathOf (url: string): string {
  return url.split('?')[0].slice(0, MAX_LOGGED_LENGTH)
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
