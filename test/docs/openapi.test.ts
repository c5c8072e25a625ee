import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { projectRoot } from '../../lib/paths.js'
import { build, ISSUER, PLATFORM_SCOPES } from '../helper.js'

const app = await build(t)

t.test('/docs/json is an OpenAPI 3.1 document generated from every route', async (t) => {
  const res = await app.inject({ method: 'GET', url: '/docs/json' })
  t.equal(res.statusCode, 200)
  const document = res.json() as { openapi: string, paths: Record<string, Record<string, { operationId?: string, tags?: string[], responses?: Record<string, unknown> }>> }
  t.equal(document.openapi, '3.1.0')
  const expected = [
    'post /api/v1/token', 'post /api/v1/token/introspect', 'post /api/v1/token/revoke',
    'get /.well-known/jwks.json', 'get /.well-known/oauth-authorization-server',
    'post /api/v1/agents', 'get /api/v1/agents', 'get /api/v1/agents/{agentId}', 'patch /api/v1/agents/{agentId}', 'delete /api/v1/agents/{agentId}',
    'post /api/v1/agents/{agentId}/credentials', 'get /api/v1/agents/{agentId}/credentials',
    'post /api/v1/agents/{agentId}/credentials/{credentialId}/rotate', 'delete /api/v1/agents/{agentId}/credentials/{credentialId}',
    'get /health'
  ]
  const operations = Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({ key: `${method} ${path}`, operation })))
  const keys = operations.map((entry) => entry.key)
  for (const key of expected) t.ok(keys.includes(key), `documents ${key}`)
  const ids = new Set<string>()
  for (const { key, operation } of operations) {
    t.ok(typeof operation.operationId === 'string' && operation.operationId !== '', `${key} has an operationId`)
    t.notOk(ids.has(operation.operationId as string), `${key}: its operationId is unique`)
    ids.add(operation.operationId as string)
    t.ok((operation.tags ?? []).length > 0, `${key} has tags`)
    t.ok(Object.keys(operation.responses ?? {}).some((status) => status.startsWith('2')), `${key} documents its success response`)
    // what Fastify's body parsing answers to a body too large or of another type (seen by test/resilience/fuzz.test.ts)
    if (/^(post|patch|delete) \/api\//.test(key)) {
      t.ok('413' in (operation.responses ?? {}) && '415' in (operation.responses ?? {}), `${key} documents 413 and 415`)
    }
  }
})

t.test('/docs serves Swagger UI', async (t) => {
  const res = await app.inject({ method: 'GET', url: '/docs/' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/html/)
  t.match(res.body, /swagger/i)
})

t.test('DOCS_ENABLED=false serves neither the UI nor the document', async (t) => {
  const quiet = await build(t, { env: { DOCS_ENABLED: 'false' } })
  t.equal((await quiet.inject({ method: 'GET', url: '/docs/json' })).statusCode, 404)
  t.equal((await quiet.inject({ method: 'GET', url: '/docs' })).statusCode, 404)
})

type Json = Record<string, any>

t.test('named schemas, real media types, codes, headers, security and examples (issue 14)', async (t) => {
  const document = (await app.inject({ method: 'GET', url: '/docs/json' })).json() as Json
  const pkg = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string, license: string }
  t.equal(document.info.version, pkg.version, 'info.version is package.json\'s')
  t.equal(document.info.license.identifier, pkg.license, 'info.license')
  t.same(document.servers.map((server: Json) => server.url), [ISSUER], 'servers: ISSUER_URL')

  const names = Object.keys(document.components.schemas)
  for (const name of ['Agent', 'AgentList', 'CreateAgent', 'UpdateAgent', 'Credential', 'IssuedCredential', 'CredentialList', 'AuditEvent', 'AuditList',
    'AuditVerification', 'Problem', 'OAuthError', 'TokenRequest', 'TokenResponse', 'TokenParameter', 'IntrospectionResponse', 'JWKS', 'AuthorizationServerMetadata']) {
    t.ok(names.includes(name), `components.schemas.${name}`)
  }
  t.notOk(names.some((name) => /^def-\d+$/.test(name)), 'no anonymous def-N schema')
  t.notMatch(JSON.stringify(document.paths), /"title":"Problem"/, 'Problem is referenced, never repeated inline')

  const oauth2 = document.components.securitySchemes.oauth2
  t.equal(oauth2.type, 'oauth2')
  t.equal(oauth2.flows.clientCredentials.tokenUrl, `${ISSUER}/api/v1/token`, 'the token URL comes from ISSUER_URL')
  t.same(Object.keys(oauth2.flows.clientCredentials.scopes), PLATFORM_SCOPES, 'the policy\'s platform scopes')

  const operations = Object.entries(document.paths as Json).flatMap(([path, item]) =>
    Object.entries(item as Json).map(([method, operation]) => ({ key: `${method} ${path}`, operation: operation as Json })))
  for (const { key, operation } of operations) {
    t.ok(Array.isArray(operation.security), `${key} declares its security`)
    for (const [status, response] of Object.entries(operation.responses as Json) as Array<[string, Json]>) {
      if (response.$ref !== undefined) continue
      t.ok(response.headers?.['x-request-id'] !== undefined, `${key} ${status}: x-request-id`)
      if (status === '429' || status === '503') t.ok(response.headers['Retry-After'] !== undefined, `${key} ${status}: Retry-After`)
      if (status === '401') t.ok(response.headers['WWW-Authenticate'] !== undefined, `${key} 401: WWW-Authenticate`)
      for (const [type, media] of Object.entries(response.content ?? {}) as Array<[string, Json]>) {
        t.ok(media.example !== undefined, `${key} ${status} ${type}: an example`)
        if (!status.startsWith('4') && !status.startsWith('5')) continue
        const oauthRoute = key.includes('/api/v1/token')
        // the health checks answer their own body with 503; only load shedding makes that a problem
        if (key.startsWith('get /health') && status === '503' && type === 'application/json') continue
        t.equal(type, oauthRoute ? 'application/json' : 'application/problem+json', `${key} ${status}: the media type the server sends`)
        const narrowed = media.schema.allOf?.[1]?.properties?.[oauthRoute ? 'error' : 'code']?.enum
        t.ok(Array.isArray(narrowed) && narrowed.length > 0, `${key} ${status}: its ${oauthRoute ? 'error' : 'code'} values are listed`)
      }
    }
    for (const [type, media] of Object.entries(operation.requestBody?.content ?? {}) as Array<[string, Json]>) {
      t.ok(media.example !== undefined, `${key} request ${type}: an example`)
    }
    t.ok('408' in operation.responses && '431' in operation.responses, `${key}: Node's 408 and 431`)
  }
  const find = (key: string) => operations.find((entry) => entry.key === key)?.operation as Json
  for (const key of ['get /health', 'get /health/live', 'get /health/ready', 'get /.well-known/jwks.json', 'get /.well-known/oauth-authorization-server']) {
    t.same(find(key).security, [], `${key} is public: security []`)
  }
  t.same(find('post /api/v1/agents').security, [{ oauth2: ['agents:write'] }, { bearerAuth: [] }], 'registration: agents:write')
  t.same(find('get /api/v1/audit').security, [{ oauth2: ['audit:read'] }, { bearerAuth: [] }], 'the audit trail: audit:read')
  t.same(find('post /api/v1/agents/{agentId}/credentials').requestBody.required, false, 'generate: the body may be left out')
  t.same(find('post /api/v1/agents/{agentId}/credentials/{credentialId}/rotate').requestBody.required, false, 'rotate: the body may be left out')
  t.same(find('post /api/v1/agents').requestBody.required, true, 'registration: a body is required')
  const limit = (find('get /api/v1/agents').parameters as Json[]).find((parameter) => parameter.name === 'limit') as Json
  t.same([limit.required, limit.schema.default], [false, 20], 'limit may be left out: it has a default')
  t.same(find('post /api/v1/agents/{agentId}/credentials/{credentialId}/rotate').responses['409'].content['application/problem+json'].schema.allOf[1].properties.code.enum,
    ['AGENT_ALREADY_DECOMMISSIONED', 'CREDENTIAL_ALREADY_REVOKED', 'CONFLICT'], 'rotate: its 409 codes')
  t.same(find('post /api/v1/token').requestBody.content['application/json'].example, { grant_type: 'client_credentials' },
    'the token request example is a request that works as is (with HTTP Basic)')
})

t.test('/docs over http:// : no upgrade-insecure-requests, and Try it out may call ISSUER_URL', async (t) => {
  const res = await app.inject({ method: 'GET', url: '/docs/' })
  const csp = String(res.headers['content-security-policy'])
  t.notMatch(csp, /upgrade-insecure-requests/)
  t.match(csp, `connect-src 'self' ${ISSUER}`)
  const secure = await build(t, { env: { ISSUER_URL: 'https://idp.example.org' } })
  t.match(String((await secure.inject({ method: 'GET', url: '/docs/' })).headers['content-security-policy']), /upgrade-insecure-requests/,
    'kept over https://')
})
