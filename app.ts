import { randomUUID } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import Fastify, { type FastifyInstance } from 'fastify'
import cors from '@fastify/cors'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import configPlugin, { type Config } from './plugins/config.js'
import errorsPlugin, { clientErrorHandler, malformedRequest } from './plugins/errors.js'
import securityHeadersPlugin from './plugins/security-headers.js'
import dbPlugin from './plugins/db.js'
import cachePlugin from './plugins/cache.js'
import keysPlugin from './plugins/keys.js'
import jobsPlugin from './plugins/jobs.js'
import vaultPlugin from './plugins/vault.js'
import auditPlugin from './plugins/audit.js'
import authPlugin from './plugins/auth.js'
import policyPlugin from './plugins/policy.js'
import swaggerPlugin from './plugins/swagger.js'
import metricsPlugin from './plugins/metrics.js'
import loadSheddingPlugin from './plugins/load-shedding.js'
import rateLimitPlugin from './plugins/rate-limit.js'
import clientAuthPlugin from './plugins/client-auth.js'
import clientDirectoryPlugin from './plugins/client-directory.js'
import remoteKeysPlugin from './plugins/remote-keys.js'
import assertionAuthPlugin from './plugins/assertion-auth.js'
import clientMetadataPlugin from './plugins/client-metadata.js'
import dpopPlugin from './plugins/dpop.js'
import healthRoutes from './routes/health.js'
import agentRoutes from './routes/agents/index.js'
import agentKeyRoutes from './routes/agents/keys.js'
import credentialRoutes from './routes/credentials/index.js'
import oauthRoutes from './routes/oauth/index.js'
import auditRoutes from './routes/audit/index.js'
import federationRoutes from './routes/federation/index.js'
import { RequestLogController, loggerOptions } from './lib/logger.js'
import { validatorCompiler } from './lib/validation.js'
import { COMPONENT_SCHEMAS } from './schemas/components.js'
import { sanitizeForwardedFor } from './lib/forwarded.js'
import { illFormedStringPath } from './lib/unicode.js'
import { utf8Text } from './lib/utf8.js'
import { OAuthError, validationError } from './lib/errors.js'

/** Requests larger than this are refused with 413 before they are parsed. */
export const BODY_LIMIT_BYTES = 64 * 1024

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** Honour a caller's x-request-id when it is a sane token (it ends up in logs), else mint one. */
function requestId (request: IncomingMessage): string {
  const given = request.headers['x-request-id']
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
}

/**
 * With an ISSUER_URL that has a path (https://example.com/idp) every endpoint URL the IdP
 * publishes starts with that path. Requests arrive with it (a proxy that forwards as is) or
 * without it (a proxy that strips it); both reach the same routes.
 */
function issuerPathStripper (issuerUrl: string): ((request: IncomingMessage) => string) | undefined {
  const prefix = new URL(issuerUrl).pathname.replace(/\/+$/, '')
  if (prefix === '') return undefined
  return function stripIssuerPath (request) {
    const url = request.url ?? '/'
    return url === prefix || url.startsWith(`${prefix}/`) || url.startsWith(`${prefix}?`) ? url.slice(prefix.length) || '/' : url
  }
}

export interface BuildOptions {
  config: Config
  /** where log lines go; stdout by default */
  logStream?: NodeJS.WritableStream
}

/**
 * The microkernel: capability plugins in dependency order, then the feature routes. Nothing here
 * knows about dev mode or tests; they differ only in the Config they pass.
 */
export async function buildApp ({ config, logStream }: BuildOptions): Promise<FastifyInstance> {
  const app = Fastify({
    logger: loggerOptions(config, logStream),
    // one line per request, written when it completes, instead of Fastify's two
    logController: new RequestLogController(),
    bodyLimit: BODY_LIMIT_BYTES,
    // a request that never completes (slow headers, a body that stops) is answered 408 and closed,
    // instead of holding its connection for Node's default 300 s (issue 11, defect 10)
    requestTimeout: config.REQUEST_TIMEOUT_MS,
    http: { headersTimeout: config.REQUEST_TIMEOUT_MS, connectionsCheckingInterval: Math.min(1000, config.REQUEST_TIMEOUT_MS) },
    // while closing, a request on a connection already accepted is still served (never 503 "closing")
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    trustProxy: config.TRUST_PROXY.length > 0 ? config.TRUST_PROXY : false,
    genReqId: requestId,
    requestIdHeader: false,
    rewriteUrl: issuerPathStripper(config.ISSUER_URL),
    frameworkErrors: malformedRequest,
    clientErrorHandler
  }).withTypeProvider<TypeBoxTypeProvider>()

  // the named schemas, once: routes reference them ($ref), the validator, the serializer and the
  // OpenAPI document (components.schemas) resolve them
  for (const schema of COMPONENT_SCHEMAS) app.addSchema(schema)
  app.setValidatorCompiler(validatorCompiler(COMPONENT_SCHEMAS))

  // only JSON (and, on the OAuth routes, forms) is accepted; text/plain would reach validation as a string
  app.removeContentTypeParser('text/plain')
  // JSON bodies: Fastify's own parser (prototype-poisoning checks included), on bytes that are UTF-8
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, function parseUtf8Json (request, body, done) {
    const text = utf8Text(body as Buffer)
    if (text === null) return done(validationError('the body is not UTF-8', [{ field: 'body', message: 'must be encoded as UTF-8' }]), undefined)
    parseJson(request, text, done)
  })
  app.addHook('onRequest', function echoRequestId (request, reply, done) {
    reply.header('x-request-id', request.id)
    done()
  })
  if (config.TRUST_PROXY.length > 0) {
    // before anything reads request.ip: proxy-addr throws on entries that are not bare addresses
    app.addHook('onRequest', function normaliseForwardedFor (request, _reply, done) {
      const forwarded = request.headers['x-forwarded-for']
      if (typeof forwarded === 'string') request.raw.headers['x-forwarded-for'] = sanitizeForwardedFor(forwarded)
      done()
    })
  }

  app.addHook('preValidation', function refuseIllFormedUnicode (request, _reply, done) {
    const path = illFormedStringPath(request.body)
    if (path === null) return done()
    done(request.routeOptions.config.oauth === true
      ? new OAuthError(400, 'invalid_request', `${path.slice('body.'.length)} is not valid Unicode`)
      : validationError('the body holds text that is not valid Unicode', [{ field: path, message: 'is not valid Unicode (a lone surrogate)' }]))
  })

  await app.register(configPlugin, { config })
  await app.register(errorsPlugin)
  await app.register(securityHeadersPlugin)
  await app.register(loadSheddingPlugin)
  await app.register(cors, {
    origin: config.CORS_ORIGIN === '*' ? '*' : config.CORS_ORIGIN.split(',').map((origin) => origin.trim()),
    exposedHeaders: ['x-request-id', 'retry-after', 'www-authenticate']
  })
  await app.register(dbPlugin)
  await app.register(cachePlugin)
  await app.register(keysPlugin)
  // only when VAULT_ADDR is set: then client secrets are kept in Vault KV v2 (plugins/vault.ts)
  if (config.VAULT_ADDR !== undefined) await app.register(vaultPlugin)
  await app.register(jobsPlugin)
  await app.register(auditPlugin)
  await app.register(rateLimitPlugin)
  await app.register(clientDirectoryPlugin)
  await app.register(remoteKeysPlugin)
  await app.register(dpopPlugin)
  await app.register(authPlugin)
  await app.register(policyPlugin)
  // after policy: a metadata-document client gets the scopes the policy grants to its host
  await app.register(clientMetadataPlugin)
  await app.register(assertionAuthPlugin)
  await app.register(clientAuthPlugin)
  await app.register(swaggerPlugin)
  // after swagger, so that /metrics is documented; plugins above report to it lazily (app.metrics?.…)
  await app.register(metricsPlugin)

  await app.register(healthRoutes)
  await app.register(agentRoutes)
  await app.register(agentKeyRoutes)
  await app.register(credentialRoutes)
  await app.register(oauthRoutes)
  await app.register(auditRoutes)
  await app.register(federationRoutes)

  return app
}
