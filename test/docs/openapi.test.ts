import t from 'tap'
import { build } from '../helper.js'

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
