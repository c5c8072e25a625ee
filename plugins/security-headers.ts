import fp from 'fastify-plugin'
import helmet from 'helmet'
import type { FastifyInstance } from 'fastify'

/**
 * helmet's security headers on every response. JSON loads nothing, so it gets the strictest
 * content security policy (OWASP REST Security); Swagger UI at /docs sends its own policy
 * (plugins/swagger.ts, staticCSP), which replaces this one on its pages.
 *
 * helmet itself, not @fastify/helmet: the wrapper builds helmet's middleware anew on every request
 * (≈ 30 µs of event-loop time each, measured on the token endpoint); built once here, the same
 * headers cost a few microseconds.
 */
export default fp(async function securityHeadersPlugin (app: FastifyInstance) {
  const applyHeaders = helmet({
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } }
  })
  app.addHook('onRequest', function securityHeaders (request, reply, done) {
    applyHeaders(request.raw, reply.raw, (error?: unknown) => { done(error instanceof Error ? error : undefined) })
  })
}, { name: 'security-headers', fastify: '5.x' })
