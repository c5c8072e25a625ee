import formbody from '@fastify/formbody'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { OAuthError } from '../../lib/errors.js'
import token from './token.js'
import introspect from './introspect.js'
import revoke from './revoke.js'
import wellKnown from './well-known.js'

/**
 * The OAuth 2.0 endpoints, in their own encapsulated scope: only here are form-encoded bodies
 * parsed (RFC 6749 requires them), and only here does a repeated parameter mean invalid_request.
 */
function refuseRepeatedParameters (request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void): void {
  const body = request.body
  const repeated = body === null || typeof body !== 'object'
    ? []
    : Object.entries(body).filter(([, value]) => Array.isArray(value)).map(([name]) => name)
  done(repeated.length > 0 ? new OAuthError(400, 'invalid_request', `parameter repeated: ${repeated.join(', ')}`) : undefined)
}

const oauth: FastifyPluginAsync = async function oauthRoutes (app) {
  await app.register(formbody)
  app.addHook('preValidation', refuseRepeatedParameters)
  await app.register(token)
  await app.register(introspect)
  await app.register(revoke)
  await app.register(wellKnown)
}

export default oauth
