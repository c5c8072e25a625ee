import type { Socket } from 'node:net'
import fp from 'fastify-plugin'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { completeRequest, noteFailure } from '../lib/logger.js'
import { protectedResourceMetadataUrl } from '../lib/protected-resource.js'
import { withChallengeParameter } from '../lib/www-authenticate.js'
import {
  isDependencyFailure, OAuthError, OverloadedError, problemType, ProblemError, RateLimitError, STATUS_TITLES, validationError,
  type FieldError, type OAuthErrorCode, type ProblemCode
} from '../lib/errors.js'

/**
 * The one error handler: whatever is thrown (lib/errors.ts's coded errors, Fastify's validation
 * and framework errors, driver failures) is rendered as an RFC 6749 §5.2 body on OAuth routes
 * (route config `oauth: true`) and as RFC 9457 problem details everywhere else. Handlers throw;
 * they never build error JSON themselves. A 5xx never carries driver text or stacks.
 */

const TITLES = STATUS_TITLES

interface Rendered { status: number, code: ProblemCode, detail: string, headers: Record<string, string>, errors?: FieldError[] }

/** Anything a handler, a hook or Fastify itself may throw. */
type Thrown = Error & { statusCode?: number, code?: string, validation?: unknown[], validationContext?: string }

/** Turns anything thrown into a status, a code and a safe detail. */
function classify (error: Thrown): Rendered {
  if (error instanceof ProblemError) {
    return { status: error.statusCode, code: error.code, detail: error.detail, headers: error.headers, errors: error.errors }
  }
  if (error instanceof RateLimitError) {
    return { status: 429, code: 'RATE_LIMIT_EXCEEDED', detail: error.message, headers: { 'retry-after': String(error.retryAfterSeconds) } }
  }
  if (error instanceof OverloadedError) {
    return { status: 503, code: 'SERVICE_UNAVAILABLE', detail: error.message, headers: { 'retry-after': '5' } }
  }
  if (isDependencyFailure(error) || error.statusCode === 503) {
    return { status: 503, code: 'SERVICE_UNAVAILABLE', detail: 'a backing service is unavailable; retry later', headers: { 'retry-after': '5' } }
  }
  if (Array.isArray(error.validation)) {
    const errors = fieldErrors(error)
    return { status: 400, code: 'VALIDATION_ERROR', detail: errors.map((entry) => `${entry.field}: ${entry.message}`).join('; '), headers: {}, errors }
  }
  const status = typeof error.statusCode === 'number' ? error.statusCode : 500
  if (status >= 400 && status < 500) {
    // Fastify's own client errors: malformed JSON, wrong content type, body too large, bad URL
    return { status, code: status === 404 ? 'NOT_FOUND' : 'VALIDATION_ERROR', detail: clientErrorDetail(error), headers: {} }
  }
  return { status: 500, code: 'INTERNAL_ERROR', detail: 'an unexpected error occurred', headers: {} }
}

function clientErrorDetail (error: Thrown): string {
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE': return 'unsupported content type; send application/json'
    case 'FST_ERR_CTP_BODY_TOO_LARGE': return 'request body is too large'
    case 'FST_ERR_CTP_EMPTY_JSON_BODY': return 'the JSON body is empty'
    case 'FST_ERR_CTP_INVALID_JSON_BODY': return 'the body is not valid JSON'
    default:
      // Fastify's 4xx messages describe the request, not the server; still, keep them short and single-line
      return (error.message || 'bad request').split('\n')[0].slice(0, 200)
  }
}

/** Ajv errors as `{field, message}`: the field is the JSON pointer of the bad value or of the missing/extra property. */
function fieldErrors (error: Thrown): FieldError[] {
  const context = error.validationContext ?? 'body'
  return (error.validation as Array<{ instancePath: string, keyword: string, message?: string, params: Record<string, unknown> }>).map((entry) => {
    const base = entry.instancePath.replace(/^\//, '').replace(/\//g, '.')
    const property = entry.params.additionalProperty ?? entry.params.missingProperty
    const field = [context, base, typeof property === 'string' ? property : ''].filter(Boolean).join('.')
    const message = entry.keyword === 'additionalProperties'
      ? 'unknown or read-only field'
      : entry.keyword === 'enum'
        ? `must be one of: ${(entry.params.allowedValues as string[]).join(', ')}`
        : (entry.message ?? 'is invalid')
    return { field, message }
  })
}

function oauthBody (error: Thrown): { status: number, error: OAuthErrorCode, description: string, headers: Record<string, string> } {
  if (error instanceof OAuthError) return { status: error.statusCode, error: error.error, description: error.description, headers: error.headers }
  if (error instanceof RateLimitError) {
    return { status: 429, error: error.oauthError, description: error.message, headers: { 'retry-after': String(error.retryAfterSeconds) } }
  }
  const rendered = classify(error)
  if (rendered.status === 503) return { status: 503, error: 'temporarily_unavailable', description: 'the service is temporarily unavailable', headers: rendered.headers }
  if (rendered.status >= 500) return { status: 500, error: 'server_error', description: 'an unexpected error occurred', headers: {} }
  // a body too large or of the wrong type keeps its HTTP status; every other client error is RFC 6749's 400
  const status = rendered.status === 413 || rendered.status === 415 ? rendered.status : 400
  return { status, error: 'invalid_request', description: rendered.detail, headers: {} }
}

/**
 * A failure goes on the request's completion line as its code (lib/logger.ts); only a 5xx also
 * writes its error, once, with the stack.
 */
function logFailure (request: FastifyRequest, error: Error, status: number, code: string): void {
  noteFailure(request, code)
  // shedding load is the plan working, not a failure to investigate: no stack per refused request
  if (status >= 500 && !(error instanceof OverloadedError)) request.log.error({ err: error }, 'request failed')
}

async function errorHandler (this: FastifyInstance, error: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  if (request.routeOptions.config?.oauth === true) {
    const body = oauthBody(error)
    logFailure(request, error, body.status, body.error)
    reply.code(body.status).headers({ ...body.headers, 'cache-control': 'no-store' }).type('application/json')
    return { error: body.error, error_description: body.description }
  }
  const problem = classify(error)
  logFailure(request, error, problem.status, problem.code)
  if (problem.status === 401 && request.routeOptions.url?.startsWith('/api/') === true) {
    // RFC 9728 §5.1: every 401 of the management API names its protected resource metadata, in the
    // one place every challenge passes through (plugins/auth.ts builds them; DPoP's too)
    const challenge = withChallengeParameter(problem.headers['www-authenticate'], ['Bearer', 'DPoP'], 'resource_metadata',
      protectedResourceMetadataUrl(this.config.ISSUER_URL))
    return problemReply(reply, { ...problem, headers: { ...problem.headers, 'www-authenticate': challenge } })
  }
  return problemReply(reply, problem)
}

/** Writes a problem+json answer (RFC 9457) and returns its body. */
function problemReply (reply: FastifyReply, problem: Rendered) {
  reply.code(problem.status).headers(problem.headers).type('application/problem+json')
  return {
    type: problemType(problem.code),
    title: TITLES[problem.status] ?? 'Error',
    status: problem.status,
    detail: problem.detail,
    code: problem.code,
    ...(problem.errors === undefined ? {} : { errors: problem.errors })
  }
}

/**
 * Fastify's own refusals before routing (a badly percent-encoded path, a path parameter over the
 * router's length limit): a 400 problem like any other malformed request, never echoing the path.
 */
export function malformedRequest (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  noteFailure(request, error.code)
  // Fastify runs no hooks and reports no completion for these: the request id header, the request's
  // line and its metrics are ours to write
  reply.header('x-request-id', request.id)
  reply.raw.once('finish', function completeMalformed () { completeRequest(request, reply) })
  // answered here: the error handler belongs to routes, and no route was matched
  reply.send(problemReply(reply, classify(validationError('the request path is malformed', [{ field: 'params', message: 'is malformed' }]))))
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** answer errors as RFC 6749 §5.2 bodies instead of problem+json */
    oauth?: boolean
  }
}

export default fp(async function errorsPlugin (app) {
  app.setErrorHandler(errorHandler)
  app.setNotFoundHandler(async function routeNotFound (request) {
    throw new ProblemError(404, 'NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0].slice(0, 200)}`)
  })
}, { name: 'errors', fastify: '5.x' })

const CLIENT_ERRORS: Record<string, { status: number, detail: string }> = {
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408, detail: 'the request was not received in time' },
  HPE_HEADER_OVERFLOW: { status: 431, detail: 'the request headers are too large' }
}

/**
 * Node's own refusals of a request it could not even parse (bad syntax, headers too large, too
 * slow): a problem+json answer like every other, written to the socket. Only the error's code is
 * logged — never the error itself, whose `rawPacket` holds the raw request bytes, Authorization
 * header included (issue 11, defect 8: Fastify's default handler logged it at trace level).
 */
export function clientErrorHandler (this: FastifyInstance, error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  const { status, detail } = CLIENT_ERRORS[error.code ?? ''] ?? { status: 400, detail: 'the request is malformed' }
  this.log.debug({ code: error.code, status }, 'client error')
  if (socket.writable) {
    // the contract's codes name no transport failure: each is the client's request being unusable
    const body = JSON.stringify({ type: `urn:agentidp:problem:http-${status}`, title: TITLES[status], status, detail, code: 'VALIDATION_ERROR' })
    socket.write(`HTTP/1.1 ${status} ${TITLES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Content-Type: application/problem+json\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.destroy()
}
