import fp from 'fastify-plugin'
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'

/**
 * The OpenAPI 3.1 document, generated from the route schemas (never written by hand), at
 * /docs/json, and Swagger UI at /docs. Registered before the routes so it sees all of them.
 */
export default fp(async function swaggerPlugin (app: FastifyInstance) {
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'AgentIdP',
        description: 'Identity provider for AI agents: OAuth 2.0 client credentials, RS256 access tokens (RFC 9068), scopes and an audit trail.',
        version: '1.0.0'
      },
      servers: [{ url: app.config.ISSUER_URL }],
      tags: [
        { name: 'oauth', description: 'OAuth 2.0 token, introspection, revocation and discovery' },
        { name: 'agents', description: 'Agent registry' },
        { name: 'credentials', description: 'Client secrets of an agent' },
        { name: 'audit', description: 'Audit trail' },
        { name: 'operations', description: 'Health, metrics and documentation' }
      ],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          clientSecretBasic: { type: 'http', scheme: 'basic' }
        }
      }
    },
    hideUntagged: false
  })
  if (!app.config.DOCS_ENABLED) return
  await app.register(fastifySwaggerUi, {
    routePrefix: '/docs',
    staticCSP: true,
    uiConfig: { deepLinking: true }
  })
}, { name: 'swagger', dependencies: ['config'], fastify: '5.x' })
