import { Type, type Static, type TSchema } from 'typebox'
import { STATUS_TITLES, problemType, type OAuthErrorCode, type ProblemCode } from '../lib/errors.js'
import { EXAMPLE, Problem, ref } from './common.js'
import { OAuthErrorBody } from './oauth.js'

/**
 * Route response declarations. Each status gets its media type — what plugins/errors.ts really
 * sends: application/problem+json for management problems, application/json for RFC 6749 errors —
 * a named schema narrowed to the codes this operation can answer with, and an example. Fastify
 * compiles the serializer from `content[type].schema`; @fastify/swagger copies the rest as is.
 */

type ErrorStatus = 400 | 401 | 403 | 404 | 409 | 413 | 415 | 429 | 500 | 503

const DESCRIPTIONS: Record<ErrorStatus, string> = {
  400: 'The request breaks the schema or the rules of the operation',
  401: 'No valid credentials (see WWW-Authenticate)',
  403: 'Authenticated, but not allowed (see WWW-Authenticate for the scope that is missing)',
  404: 'Not found, or not visible to this caller',
  409: 'Refused in the current state',
  413: 'The body is larger than 64 KiB',
  415: 'The body is neither JSON nor, on the OAuth endpoints, a form',
  429: 'Too many requests (see Retry-After)',
  500: 'An unexpected error; nothing internal is disclosed',
  503: 'A backing service is unavailable or the server is overloaded (see Retry-After)'
}

/** What each code's example says. */
const PROBLEM_DETAILS: Record<ProblemCode, string> = {
  VALIDATION_ERROR: 'body.email: must match format "email"',
  UNAUTHORIZED: 'an access token is required',
  FORBIDDEN: 'this operation requires the agents:write scope',
  NOT_FOUND: 'no route GET /api/v1/agent',
  AGENT_NOT_FOUND: `agent ${EXAMPLE.agentId} not found`,
  CREDENTIAL_NOT_FOUND: `credential ${EXAMPLE.credentialId} not found`,
  AUDIT_EVENT_NOT_FOUND: `audit event ${EXAMPLE.eventId} not found`,
  FEDERATION_ISSUER_NOT_FOUND: `federation issuer ${EXAMPLE.issuerId} not found`,
  AGENT_ALREADY_EXISTS: 'an agent with this email already exists',
  AGENT_ALREADY_DECOMMISSIONED: `agent ${EXAMPLE.agentId} is decommissioned`,
  CREDENTIAL_ALREADY_REVOKED: `credential ${EXAMPLE.credentialId} is revoked`,
  FEDERATION_ISSUER_ALREADY_EXISTS: 'the issuer https://token.actions.githubusercontent.com is already trusted',
  RATE_LIMIT_EXCEEDED: 'too many failed authentications from this address; retry later',
  FREE_TIER_LIMIT_EXCEEDED: 'owner "team-research" already has the maximum of 100 agents',
  CONFLICT: `agent ${EXAMPLE.agentId} is the last agent able to use agents:write`,
  SERVICE_UNAVAILABLE: 'a backing service is unavailable; retry later',
  INTERNAL_ERROR: 'an unexpected error occurred'
}

const OAUTH_DESCRIPTIONS: Record<OAuthErrorCode, string> = {
  invalid_request: 'grant_type is required',
  invalid_client: 'client authentication failed',
  invalid_grant: 'the grant is not valid',
  unauthorized_client: 'this client may not use this grant',
  unsupported_grant_type: 'only the client_credentials grant is supported',
  invalid_scope: 'scope not granted to this client: agents:write',
  invalid_target: 'resource must be an absolute URI',
  invalid_token: 'the token is not valid',
  invalid_dpop_proof: 'the DPoP proof is not valid',
  use_dpop_nonce: 'the DPoP proof must carry the nonce in the DPoP-Nonce header',
  rate_limited: 'too many token requests for this client; retry later',
  quota_exceeded: 'the monthly token quota of this client is exhausted',
  temporarily_unavailable: 'the service is temporarily unavailable',
  server_error: 'an unexpected error occurred'
}

function problemExample (status: number, code: ProblemCode) {
  return {
    type: problemType(code),
    title: STATUS_TITLES[status],
    status,
    detail: PROBLEM_DETAILS[code],
    code,
    ...(code === 'VALIDATION_ERROR' && status === 400 ? { errors: [{ field: 'body.email', message: 'must match format "email"' }] } : {})
  }
}

/** Problem, with `code` narrowed to what this response can carry. */
function problemSchema (codes: readonly ProblemCode[]) {
  return Type.Unsafe<Static<typeof Problem>>({
    allOf: [ref(Problem), { type: 'object', properties: { code: { enum: [...codes] } } }]
  })
}

function problemResponse (status: ErrorStatus, codes: readonly ProblemCode[]) {
  return {
    description: DESCRIPTIONS[status],
    content: { 'application/problem+json': { schema: problemSchema(codes), example: problemExample(status, codes[0]) } }
  }
}

export type ProblemCodes = Partial<Record<ErrorStatus, readonly ProblemCode[]>>

/**
 * What every authenticated management route can answer, whatever it does: 413 and 415 come from
 * Fastify's body parsing (a GET's body is ignored, one list all the same), 429 from the per-address
 * limit on failed Bearer authentications.
 */
const MANAGEMENT_BASE: ProblemCodes = {
  400: ['VALIDATION_ERROR'],
  401: ['UNAUTHORIZED'],
  403: ['FORBIDDEN'],
  413: ['VALIDATION_ERROR'],
  415: ['VALIDATION_ERROR'],
  429: ['RATE_LIMIT_EXCEEDED'],
  500: ['INTERNAL_ERROR'],
  503: ['SERVICE_UNAVAILABLE']
}

/** Problem responses, exactly the statuses and codes given. */
export function problemResponses (codes: ProblemCodes) {
  return Object.fromEntries(Object.entries(codes).map(([status, list]) =>
    [status, problemResponse(Number(status) as ErrorStatus, list as readonly ProblemCode[])])) as Record<ErrorStatus, ReturnType<typeof problemResponse>>
}

/** The error responses of a management route: the shared ones, plus (or instead of) the route's own codes per status. */
export function managementErrors (own: ProblemCodes = {}) {
  return problemResponses({ ...MANAGEMENT_BASE, ...own })
}

function oauthErrorResponse (status: ErrorStatus, errors: readonly OAuthErrorCode[]) {
  const schema = Type.Unsafe<Static<typeof OAuthErrorBody>>({
    allOf: [ref(OAuthErrorBody), { type: 'object', properties: { error: { enum: [...errors] } } }]
  })
  return {
    description: DESCRIPTIONS[status],
    content: { 'application/json': { schema, example: { error: errors[0], error_description: OAUTH_DESCRIPTIONS[errors[0]] } } }
  }
}

export type OAuthErrorCodes = Partial<Record<ErrorStatus, readonly OAuthErrorCode[]>>

/** 413 and 415 as for the management routes, 500 and 503 as RFC 6749's server_error and temporarily_unavailable. */
const OAUTH_BASE: OAuthErrorCodes = {
  413: ['invalid_request'],
  415: ['invalid_request'],
  500: ['server_error'],
  503: ['temporarily_unavailable']
}

/** The RFC 6749 §5.2 error responses of an OAuth endpoint. */
export function oauthErrors (own: OAuthErrorCodes) {
  const errors: OAuthErrorCodes = { ...OAUTH_BASE, ...own }
  return Object.fromEntries(Object.entries(errors).map(([status, list]) =>
    [status, oauthErrorResponse(Number(status) as ErrorStatus, list as readonly OAuthErrorCode[])])) as Record<ErrorStatus, ReturnType<typeof oauthErrorResponse>>
}

/**
 * A 503 that is either the operation's own JSON answer (health: a dependency is down) or, while
 * the server sheds load (plugins/load-shedding.ts), a problem with Retry-After: one media type each.
 */
export function jsonOrOverloaded<T extends TSchema> (schema: T, description: string) {
  return {
    description: `${description}; or the server is overloaded (a problem, with Retry-After)`,
    content: { ...json(schema, description).content, ...problemResponse(503, ['SERVICE_UNAVAILABLE']).content }
  }
}

/** A JSON answer of a named schema; its example is the schema's own (added to the document by lib/openapi.ts). */
export function json<T extends TSchema> (schema: T, description: string) {
  return { description, content: { 'application/json': { schema: ref(schema) } } }
}
