import type { FastifyInstance, FastifyRequest } from 'fastify'
import { OAuthError } from '../../plugins/errors.js'
import type { ClientCredentialFields } from '../../plugins/client-auth.js'
import type { PolicyInput } from '../../plugins/policy.js'
import { agentExists } from './repository.js'

/**
 * Who is calling introspection or revocation: an agent presenting its own Bearer access token, or
 * a client authenticating with its credentials (whose capabilities then stand for its scopes).
 * Anything else is a 401 invalid_client, and a failed attempt is audited like any other.
 */
export type Caller = PolicyInput['principal']

const BEARER = /^Bearer +(\S+) *$/i

export async function authenticateCaller (app: FastifyInstance, request: FastifyRequest, body: ClientCredentialFields): Promise<Caller> {
  const header = request.headers.authorization
  const bearer = typeof header === 'string' ? BEARER.exec(header) : null
  if (bearer === null) {
    const client = await app.clientAuth.authenticate(request, body)
    return { agentId: client.agentId, scopes: client.capabilities, delegated: false }
  }
  if (app.clientAuth.presents(request, body)) {
    throw new OAuthError(400, 'invalid_request', 'use either a Bearer token or client credentials, not both')
  }
  const result = await app.accessTokens.validate(bearer[1])
  if (!result.ok) {
    // an unverified `sub` is attacker-chosen: named only when such an agent exists
    const claimed = result.claimedAgentId !== null && await agentExists(app.pg, result.claimedAgentId) ? result.claimedAgentId : null
    await app.audit.record(request, {
      action: 'auth.failed',
      outcome: 'failure',
      agentId: claimed,
      metadata: { reason: result.reason, method: 'bearer', endpoint: request.routeOptions.url }
    })
    throw new OAuthError(401, 'invalid_client', 'the Bearer token is not valid', { 'www-authenticate': 'Bearer error="invalid_token"' })
  }
  request.principal = result.principal
  return { agentId: result.principal.agentId, scopes: result.principal.scopes, delegated: result.principal.delegated }
}
