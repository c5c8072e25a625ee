/**
 * The product's coded errors: thrown by handlers, services and repositories, rendered by the one
 * error handler (plugins/errors.ts) as RFC 9457 problem details or RFC 6749 §5.2 bodies. A leaf:
 * it imports nothing of the project, so every layer can throw these.
 */

/** Every `code` a problem can carry: a list (not only a type) so that the OpenAPI document can enumerate it. */
export const PROBLEM_CODES = [
  'VALIDATION_ERROR', 'UNAUTHORIZED', 'FORBIDDEN', 'NOT_FOUND',
  'AGENT_NOT_FOUND', 'CREDENTIAL_NOT_FOUND', 'AUDIT_EVENT_NOT_FOUND', 'FEDERATION_ISSUER_NOT_FOUND',
  'AGENT_ALREADY_EXISTS', 'AGENT_ALREADY_DECOMMISSIONED', 'CREDENTIAL_ALREADY_REVOKED', 'FEDERATION_ISSUER_ALREADY_EXISTS',
  'RATE_LIMIT_EXCEEDED', 'FREE_TIER_LIMIT_EXCEEDED', 'CONFLICT',
  'SERVICE_UNAVAILABLE', 'INTERNAL_ERROR'
] as const
export type ProblemCode = typeof PROBLEM_CODES[number]

export interface FieldError { field: string, message: string }

/** RFC 9110's reason phrase of each status an error can have: a problem's `title`. */
export const STATUS_TITLES: Readonly<Record<number, string>> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
  408: 'Request Timeout', 409: 'Conflict', 413: 'Content Too Large', 415: 'Unsupported Media Type', 429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error', 503: 'Service Unavailable'
}

/** A problem's `type`: a URN naming its code (`AGENT_NOT_FOUND` → urn:agentidp:problem:agent-not-found). */
export function problemType (code: string): string {
  return `urn:agentidp:problem:${code.toLowerCase().replace(/_/g, '-')}`
}

export class ProblemError extends Error {
  constructor (
    readonly statusCode: number,
    readonly code: ProblemCode,
    readonly detail: string,
    readonly headers: Record<string, string> = {},
    readonly errors?: FieldError[]
  ) {
    super(detail)
    this.name = 'ProblemError'
  }
}

export const validationError = (detail: string, errors?: FieldError[]) => new ProblemError(400, 'VALIDATION_ERROR', detail, {}, errors)
export const conflict = (code: ProblemCode, detail: string) => new ProblemError(409, code, detail)
export const notFound = (code: ProblemCode, detail: string) => new ProblemError(404, code, detail)

/** RFC 6750 §3: 401 names the problem only when a token was actually presented. */
export function unauthorized (detail: string, tokenPresented: boolean): ProblemError {
  const challenge = tokenPresented
    ? `Bearer error="invalid_token", error_description="${detail}"`
    : 'Bearer'
  return new ProblemError(401, 'UNAUTHORIZED', detail, { 'www-authenticate': challenge })
}

/**
 * RFC 9449 §7.1: a 401 about DPoP — a bound token sent as Bearer, a missing or bad proof — answers
 * with the DPoP scheme, its error and the proof algorithms accepted.
 */
export function dpopUnauthorized (detail: string, error: 'invalid_token' | 'invalid_dpop_proof', algorithms: readonly string[]): ProblemError {
  return new ProblemError(401, 'UNAUTHORIZED', detail, {
    'www-authenticate': `DPoP error="${error}", error_description="${detail}", algs="${algorithms.join(' ')}"`
  })
}

export function insufficientScope (scope: string): ProblemError {
  return new ProblemError(403, 'FORBIDDEN', `this operation requires the ${scope} scope`, {
    'www-authenticate': `Bearer error="insufficient_scope", scope="${scope}"`
  })
}

export function forbidden (detail: string): ProblemError {
  return new ProblemError(403, 'FORBIDDEN', detail)
}

/** What an `access.denied` event records of a refusal. */
export interface DenialRecord {
  /** the agent the refused action was about */
  agentId: string | null
  reason: string
  details?: Record<string, unknown>
}

/**
 * A refusal decided inside a transaction (where it must roll the transaction back): the problem it
 * answers with, and what to audit once the transaction is over, so that the record survives it.
 */
export class AccessDenied extends ProblemError {
  constructor (problem: ProblemError, readonly denial: DenialRecord) {
    super(problem.statusCode, problem.code, problem.detail, problem.headers, problem.errors)
    this.name = 'AccessDenied'
  }
}

/** Every RFC 6749 §5.2 `error` the OAuth endpoints answer with (a list, for the OpenAPI document). */
export const OAUTH_ERROR_CODES = [
  'invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type',
  'invalid_scope', 'invalid_target', 'invalid_token', 'invalid_dpop_proof', 'use_dpop_nonce', 'rate_limited', 'quota_exceeded', 'temporarily_unavailable', 'server_error'
] as const
export type OAuthErrorCode = typeof OAUTH_ERROR_CODES[number]

/** An RFC 6749 §5.2 error. */
export class OAuthError extends Error {
  constructor (
    readonly statusCode: number,
    readonly error: OAuthErrorCode,
    readonly description: string,
    readonly headers: Record<string, string> = {}
  ) {
    super(description)
    this.name = 'OAuthError'
  }
}

/** PostgreSQL, Redis or Vault could not answer: always a 503, never the driver's words. */
export class DependencyUnavailableError extends Error {
  readonly statusCode = 503
  /** host:port of the dependency, for startup messages (never a URL: it may carry a password) */
  readonly location?: string
  constructor (readonly dependency: 'postgres' | 'redis' | 'vault', options?: { cause?: unknown, location?: string }) {
    super(`${dependency} is unavailable`, options)
    this.name = 'DependencyUnavailableError'
    this.location = options?.location
  }
}

export class RateLimitError extends Error {
  readonly statusCode = 429
  constructor (readonly retryAfterSeconds: number, readonly oauthError: OAuthErrorCode = 'rate_limited', detail = 'too many requests') {
    super(detail)
    this.name = 'RateLimitError'
  }
}

const CONNECTION_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EPIPE', 'EAI_AGAIN'])
// pg pool/connection failures and ioredis ones (offline queue disabled, reconnecting, timed out)
const PG_CONNECTION_MESSAGES = /timeout exceeded when trying to connect|Connection terminated|connection error|Query read timeout|Client was closed|Cannot use a pool after calling end|Stream isn't writeable|Connection is closed|Command timed out|Reached the max retries per request/i

/** True for errors that mean "the database (or another dependency) is not answering". */
export function isDependencyFailure (error: unknown): boolean {
  if (error instanceof DependencyUnavailableError) return true
  if (typeof error !== 'object' || error === null) return false
  const { code, message } = error as { code?: unknown, message?: unknown }
  if (typeof code === 'string') {
    if (CONNECTION_ERRNOS.has(code)) return true
    // SQLSTATE class 08 = connection exception; 57P01-57P03 = server shutting down / starting; 53300 = too many connections;
    // 57014 = statement cancelled (the pool's statement_timeout, e.g. a write stuck behind a lock) and 55P03 = lock not
    // available: the database did not finish in time; class 40 = transaction rolled back (serialization failure,
    // deadlock, completion unknown): worth a retry. All 503, never 500 (test/plugins/statement-cancelled.test.ts).
    if (/^08|^40|^57P0[1-3]$|^57014$|^55P03$|^53300$/.test(code)) return true
  }
  return typeof message === 'string' && PG_CONNECTION_MESSAGES.test(message)
}

/** The 404 of a federation issuer id that names none. */
export const federationIssuerNotFound = (issuerId: string) => notFound('FEDERATION_ISSUER_NOT_FOUND', `federation issuer ${issuerId} not found`)

/** The 404 every hidden or missing agent gets, identical either way. */
export const agentNotFound = (agentId: string) => notFound('AGENT_NOT_FOUND', `agent ${agentId} not found`)

export interface ConfigProblem { variable: string, problem: string }

/**
 * Missing or malformed variables, every one found in one pass; server.ts prints `message`, one
 * line per problem, and exits non-zero before binding a port. `variable` is the first.
 */
export class ConfigError extends Error {
  readonly problems: ConfigProblem[]
  constructor (readonly variable: string, problem: string, more: ConfigProblem[] = []) {
    const problems = [{ variable, problem }, ...more]
    super(problems.map((entry) => `configuration error: ${entry.variable} ${entry.problem}`).join('\n'))
    this.name = 'ConfigError'
    this.problems = problems
  }

  static of (problems: ConfigProblem[]): ConfigError {
    const [first, ...more] = problems
    return new ConfigError(first.variable, first.problem, more)
  }
}

/** The authorization policy can't be loaded: the server refuses to start unguarded. */
export class PolicyLoadError extends Error {
  constructor (path: string, problem: string) {
    super(`policy ${path} ${problem}: refusing to start without a valid policy (set POLICY_DIR to a directory with data/scopes.json)`)
    this.name = 'PolicyLoadError'
  }
}

/** A token whose `kid` names no key of this issuer. */
export class UnknownKeyError extends Error {
  readonly code = 'ERR_UNKNOWN_KID'
  constructor () {
    super('the token was not signed by a key of this issuer')
    this.name = 'UnknownKeyError'
  }
}

/** The process can't take more work now (a full argon2 queue, a lagging event loop): 503 with Retry-After. */
export class OverloadedError extends Error {
  /** answered as 503 (SERVICE_UNAVAILABLE / temporarily_unavailable) with Retry-After */
  readonly statusCode = 503
  constructor (message = 'too many verifications in progress') {
    super(message)
    this.name = 'OverloadedError'
  }
}
