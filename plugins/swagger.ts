import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import fp from 'fastify-plugin'
import fastifySwagger, { type SwaggerTransform } from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import { projectRoot } from '../lib/paths.js'
import { finishDocument } from '../lib/openapi.js'

/**
 * The OpenAPI 3.1 document, generated from the route schemas (never written by hand), at
 * /docs/json, and Swagger UI at /docs. Registered before the routes so it sees all of them.
 *
 * - Named schemas (an `$id`, registered once by app.ts) become components.schemas under that name.
 * - Each management operation's security comes from the policy: its action's scope, as an oauth2
 *   client-credentials requirement (Swagger UI's Authorize then fetches a token by itself), or a
 *   Bearer token pasted by hand. Routes that name no action declare their own, or none (`[]`).
 * - Headers by status and examples are added once for all (lib/openapi.ts).
 */

declare module 'fastify' {
  interface FastifyContextConfig {
    /** the route fills in {} for a missing body: the document must not call its body required */
    optionalBody?: boolean
  }
}

const SCOPE_DESCRIPTIONS: Record<string, string> = {
  'agents:read': 'read and list agents',
  'agents:write': 'register, update, suspend and decommission agents; revoke any token',
  'credentials:read': "list agents' credentials",
  'credentials:write': "generate, rotate and revoke agents' credentials",
  'tokens:read': 'introspect tokens',
  'audit:read': 'read and verify the audit trail'
}

function packageVersion (): string {
  return (JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string }).version
}

function securitySchemes (base: string, platformScopes: readonly string[], metricsToken: boolean) {
  return {
    oauth2: {
      type: 'oauth2' as const,
      description: 'OAuth 2.0 client credentials: client_id is the agentId, client_secret a secret of one of its credentials. Leave every scope unticked to get all of the client\'s capabilities.',
      flows: {
        clientCredentials: {
          tokenUrl: `${base}/api/v1/token`,
          scopes: Object.fromEntries(platformScopes.map((scope) => [scope, SCOPE_DESCRIPTIONS[scope] ?? scope]))
        }
      }
    },
    bearerAuth: { type: 'http' as const, scheme: 'bearer', bearerFormat: 'JWT', description: 'An access token obtained from POST /api/v1/token' },
    clientSecretBasic: { type: 'http' as const, scheme: 'basic', description: 'RFC 6749 §2.3.1: the agentId as user name, the client secret as password' },
    ...(metricsToken ? { metricsToken: { type: 'http' as const, scheme: 'bearer', description: 'The server\'s METRICS_TOKEN' } } : {})
  }
}

/**
 * Over plain HTTP, `upgrade-insecure-requests` makes the browser fetch the page's scripts and the
 * document over HTTPS, which such a server does not answer: a blank page from any host but
 * localhost (browsers exempt it). And Try it out calls ISSUER_URL, which need not be the host the
 * page was opened from.
 */
function uiContentSecurityPolicy (issuerUrl: string) {
  const { origin, protocol } = new URL(issuerUrl)
  return function transformStaticCSP (header: string): string {
    const directives = header.split(';').map((directive) => directive.trim()).filter((directive) => directive !== '')
      .filter((directive) => protocol === 'https:' || directive !== 'upgrade-insecure-requests')
    return [...directives, `connect-src 'self' ${origin}`].join('; ') + ';'
  }
}

export default fp(async function swaggerPlugin (app: FastifyInstance) {
  const base = app.config.ISSUER_URL.replace(/\/+$/, '')
  /** operationIds of the routes whose body may be left out, collected while the document is built */
  const optionalBodies = new Set<string>()

  /** Per route, before the operation is built: its security requirement, from the policy when it names an action. */
  const operationSecurity: SwaggerTransform = function operationSecurity ({ schema, url, route }) {
    if (schema === undefined || schema === null) return { schema, url }
    if (route.config?.optionalBody === true && schema.operationId !== undefined) optionalBodies.add(schema.operationId)
    const action = route.config?.policy
    const scope = action === undefined ? undefined : app.policy.scopeOf(action)
    const security = scope !== undefined ? [{ oauth2: [scope] }, { bearerAuth: [] }] : schema.security ?? []
    return { schema: { ...schema, security }, url }
  }

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'AgentIdP',
        description: 'Identity provider for AI agents: OAuth 2.0 client credentials, signed access tokens (RFC 9068; RS256 by default, ES256 or EdDSA with JWT_ALG), scopes and an audit trail.\n\n' +
          'Management errors are RFC 9457 problem details (`application/problem+json`) with a stable `code`; the OAuth endpoints answer RFC 6749 §5.2 `{error, error_description}`. ' +
          'Every response carries `x-request-id`.',
        version: packageVersion(),
        license: { name: 'Apache-2.0', identifier: 'Apache-2.0' }
      },
      servers: [{ url: base, description: 'this server (ISSUER_URL)' }],
      tags: [
        { name: 'oauth', description: 'OAuth 2.0 token, introspection, revocation and discovery' },
        { name: 'agents', description: 'Agent registry' },
        { name: 'credentials', description: 'Client secrets of an agent' },
        { name: 'audit', description: 'Audit trail' },
        { name: 'federation', description: 'Trusted external issuers (workload identity federation)' },
        { name: 'operations', description: 'Health, metrics and documentation' }
      ],
      components: { securitySchemes: securitySchemes(base, app.policy.platformScopes, app.config.METRICS_TOKEN !== undefined) }
    },
    // a named schema keeps its $id as its name in components.schemas (the default would be def-N)
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) => typeof json.$id === 'string' ? json.$id : `def-${i}`
    },
    transform: operationSecurity,
    transformObject: (generated) => finishDocument((generated as { openapiObject: Record<string, any> }).openapiObject, { optionalBodies }) as never,
    hideUntagged: false
  })
  if (!app.config.DOCS_ENABLED) return
  await app.register(fastifySwaggerUi, {
    routePrefix: '/docs',
    staticCSP: true,
    transformStaticCSP: uiContentSecurityPolicy(app.config.ISSUER_URL),
    uiConfig: { deepLinking: true, persistAuthorization: false, displayOperationId: true }
  })
}, { name: 'swagger', dependencies: ['config', 'policy'], fastify: '5.x' })
