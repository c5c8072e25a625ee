/**
 * The last touches of the OpenAPI document, applied to what @fastify/swagger generated from the
 * route schemas (plugins/swagger.ts, transformObject): what is the same for every operation is
 * written here once instead of in every route — the headers each status carries, and the examples
 * that the named schemas already hold, copied next to each use where Swagger UI and Redocly look.
 * Pure functions over plain objects: the document is data.
 */

type Json = Record<string, any>

const HTTP_METHODS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'])
const SCHEMAS = '#/components/schemas/'

/** Response headers, defined once under components.headers and referenced by status. */
export const RESPONSE_HEADERS: Json = {
  RequestId: {
    description: 'The request\'s id: the caller\'s own `x-request-id` when it is 1–128 characters of `A-Za-z0-9._:-`, else a new UUID. It is on the request\'s log line.',
    schema: { type: 'string', maxLength: 128 },
    example: '0f9b5a86-0c2e-4d5e-9b1a-2b7e61c3d4f5'
  },
  RetryAfter: {
    description: 'Seconds to wait before retrying (RFC 9110 §10.2.3): on every 429, and on a 503 that is a problem or an OAuth error',
    schema: { type: 'integer', minimum: 1 },
    example: 30
  },
  WwwAuthenticate: {
    description: 'The challenge (RFC 6750 §3, RFC 7617): what to authenticate with, and on a Bearer failure why it failed',
    schema: { type: 'string' },
    example: 'Bearer error="invalid_token", error_description="the access token has expired"'
  },
  WwwAuthenticateResource: {
    description: 'The challenge (RFC 6750 §3): `Bearer` with `error="invalid_token"` when a token was sent (no error when none was), and always `resource_metadata`, the URL of the protected resource metadata (RFC 9728 §5.1)',
    schema: { type: 'string' },
    example: 'Bearer error="invalid_token", error_description="the access token has expired", resource_metadata="http://localhost:3000/.well-known/oauth-protected-resource"'
  },
  WwwAuthenticateScope: {
    description: 'On a missing scope, the scope the operation needs (RFC 6750 §3.1)',
    schema: { type: 'string' },
    example: 'Bearer error="insufficient_scope", scope="agents:write"'
  }
}

/**
 * Node's own refusals, before any route is chosen (plugins/errors.ts, clientErrorHandler): any
 * operation can get them, written straight to the socket (so without x-request-id), then the
 * connection is closed.
 */
export const TRANSPORT_RESPONSES: Json = {
  RequestTimeout: {
    description: 'The whole request (headers and body) did not arrive within REQUEST_TIMEOUT_MS; the connection is closed',
    content: {
      'application/problem+json': {
        schema: { $ref: `${SCHEMAS}Problem` },
        example: { type: 'urn:agentidp:problem:http-408', title: 'Request Timeout', status: 408, detail: 'the request was not received in time', code: 'VALIDATION_ERROR' }
      }
    }
  },
  HeaderFieldsTooLarge: {
    description: 'The request headers are larger than Node.js accepts; the connection is closed',
    content: {
      'application/problem+json': {
        schema: { $ref: `${SCHEMAS}Problem` },
        example: { type: 'urn:agentidp:problem:http-431', title: 'Request Header Fields Too Large', status: 431, detail: 'the request headers are too large', code: 'VALIDATION_ERROR' }
      }
    }
  }
}

/** Which headers a response of `status` carries (x-request-id: every response). */
function headersOf (status: string, isOAuth: boolean, isManagement: boolean): string[] {
  const names = ['RequestId']
  if (status === '429' || status === '503') names.push('RetryAfter')
  // the management API's 401s name its protected resource metadata (plugins/errors.ts); the others do not
  if (status === '401') names.push(isManagement && !isOAuth ? 'WwwAuthenticateResource' : 'WwwAuthenticate')
  if (status === '403' && !isOAuth) names.push('WwwAuthenticateScope')
  return names
}

/** The header each of RESPONSE_HEADERS is. */
export const HEADER_NAMES: Record<string, string> = {
  RequestId: 'x-request-id',
  RetryAfter: 'Retry-After',
  WwwAuthenticate: 'WWW-Authenticate',
  WwwAuthenticateResource: 'WWW-Authenticate',
  WwwAuthenticateScope: 'WWW-Authenticate'
}

function operationsOf (document: Json): Array<{ path: string, operation: Json }> {
  return Object.entries(document.paths ?? {}).flatMap(([path, item]) =>
    Object.entries(item as Json).filter(([method]) => HTTP_METHODS.has(method)).map(([, operation]) => ({ path, operation: operation as Json })))
}

/** The first example a named schema holds, for a media type that references it without one. */
function exampleOf (document: Json, schema: Json | undefined): unknown {
  const target = typeof schema?.$ref === 'string' && schema.$ref.startsWith(SCHEMAS)
    ? document.components?.schemas?.[schema.$ref.slice(SCHEMAS.length)]
    : undefined
  return Array.isArray(target?.examples) ? target.examples[0] : undefined
}

function addExamples (document: Json, content: Json | undefined): void {
  for (const media of Object.values(content ?? {}) as Json[]) {
    if (media.example !== undefined || media.examples !== undefined) continue
    const example = exampleOf(document, media.schema)
    if (example !== undefined) media.example = example
  }
}

export interface FinishOptions {
  /** operationIds whose body may be left out (the route fills in {}) */
  optionalBodies: ReadonlySet<string>
}

/** Headers by status, examples next to each use, optional bodies and defaulted parameters, Node's 408 and 431: the document, changed in place and returned. */
export function finishDocument (document: Json, options: FinishOptions): Json {
  document.components = {
    ...document.components,
    headers: { ...document.components?.headers, ...RESPONSE_HEADERS },
    responses: { ...document.components?.responses, ...TRANSPORT_RESPONSES }
  }
  for (const { path, operation } of operationsOf(document)) {
    const isOAuth = (operation.tags ?? []).includes('oauth')
    const isManagement = path.startsWith('/api/')
    for (const parameter of (operation.parameters ?? []) as Json[]) {
      // a parameter with a default may be left out: the server fills it in (limit: 20)
      if (parameter.in === 'query' && parameter.schema?.default !== undefined) parameter.required = false
    }
    if (operation.requestBody !== undefined) {
      if (options.optionalBodies.has(operation.operationId)) operation.requestBody.required = false
      addExamples(document, operation.requestBody.content)
    }
    for (const [status, response] of Object.entries(operation.responses ?? {}) as Array<[string, Json]>) {
      response.headers = {
        ...response.headers,
        ...Object.fromEntries(headersOf(status, isOAuth, isManagement).map((name) => [HEADER_NAMES[name], { $ref: `#/components/headers/${name}` }]))
      }
      addExamples(document, response.content)
    }
    operation.responses = {
      ...operation.responses,
      408: { $ref: '#/components/responses/RequestTimeout' },
      431: { $ref: '#/components/responses/HeaderFieldsTooLarge' }
    }
  }
  return document
}
