import type { IncomingMessage, ServerResponse } from 'node:http'
import fp from 'fastify-plugin'
import helmet from 'helmet'
import type { FastifyInstance } from 'fastify'

/**
 * helmet's security headers on every response. JSON loads nothing, so it gets the strictest
 * content security policy (OWASP REST Security); Swagger UI at /docs sends its own policy
 * (plugins/swagger.ts, staticCSP), which replaces this one on its pages.
 *
 * helmet decides the headers; they don't depend on the request (no nonces, no per-request
 * directives), so they are recorded once at start and set as one object on every reply. Running
 * helmet's eleven middlewares on each request cost ≈ 10 µs of event-loop time per request
 * (bench/README.md); @fastify/helmet, which builds them anew each time, cost ≈ 30 µs.
 */

type HeaderValue = string | number | string[]

/** Runs helmet once against a response that only records what is set. */
function helmetHeaders (): Record<string, HeaderValue> {
  const applyHeaders = helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } }
  })
  const headers: Record<string, HeaderValue> = {}
  const recorder = {
    setHeader (name: string, value: HeaderValue) { headers[name.toLowerCase()] = value },
    removeHeader (name: string) { Reflect.deleteProperty(headers, name.toLowerCase()) }
  }
  let applied = false
  applyHeaders({ headers: {} } as IncomingMessage, recorder as unknown as ServerResponse, (error?: unknown) => {
    if (error !== undefined && error !== null) throw error
    applied = true
  })
  // helmet is synchronous today; if a version ever were not, start would fail here, not serve without headers
  if (!applied) throw new Error('helmet did not apply its headers synchronously')
  return headers
}

export default fp(async function securityHeadersPlugin (app: FastifyInstance) {
  const headers = helmetHeaders()
  app.addHook('onRequest', function securityHeaders (_request, reply, done) {
    reply.headers(headers)
    done()
  })
}, { name: 'security-headers', fastify: '5.x' })
