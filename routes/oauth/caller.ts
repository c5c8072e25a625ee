import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { ClientCredentialFields } from '../../plugins/client-auth.js'
import type { PolicyInput } from '../../services/policy.js'
import { OAuthError } from '../../lib/errors.js'
import { parseAuthorization } from '../../lib/authorization.js'

/**
 * Who is calling introspection or revocation: an agent presenting its own Bearer access token, or
 * a client authenticating with its credentials (whose capabilities then stand for its scopes).
 * Anything else is a 401 invalid_client, and a failed attempt is audited like any other and counts
 * against the address like any other of its kind (RATE_LIMIT_AUTH_FAILURES_PER_IP for client
 * credentials, RATE_LIMIT_BEARER_FAILURES_PER_IP for Bearer tokens).
 */
export type Caller = PolicyInput['principal']

export async function authenticateCaller (app: FastifyInstance, request: FastifyRequest, body: ClientCredentialFields): Promise<Caller> {
  const authorization = parseAuthorization(request.headers.authorization)
  if (authorization?.scheme !== 'bearer' && authorization?.scheme !== 'dpop') {
    const client = await app.clientAuth.authenticate(request, body)
    return { agentId: client.agentId, scopes: client.capabilities, delegated: false }
  }
  if (app.clientAuth.presents(request, body)) {
    throw new OAuthError(400, 'invalid_request', 'use either a Bearer token or client credentials, not both')
  }
  await app.auth.refuseFlooding(request)
  const result = authorization.credentials === null
    ? { ok: false as const, reason: 'malformed_authorization', claimedAgentId: null }
    : await app.auth.validate(authorization.credentials)
  if (!result.ok) {
    return await app.auth.reject(request, { claimedAgentId: result.claimedAgentId, reason: result.reason },
      new OAuthError(401, 'invalid_client', 'the Bearer token is not valid', { 'www-authenticate': 'Bearer error="invalid_token"' }))
  }
  // a DPoP-bound caller token only with the DPoP scheme and a proof of its key (RFC 9449 §7)
  const binding = await app.auth.checkBinding(request, authorization.scheme, authorization.credentials as string, result.principal)
  if (binding !== null) {
    const challenge = (binding.error as { headers?: Record<string, string> }).headers?.['www-authenticate'] ?? 'DPoP error="invalid_token"'
    return await app.auth.reject(request, { claimedAgentId: result.principal.agentId, reason: binding.reason },
      new OAuthError(401, 'invalid_client', binding.error.message, { 'www-authenticate': challenge }))
  }
  request.principal = result.principal
  return { agentId: result.principal.agentId, scopes: result.principal.scopes, delegated: result.principal.delegated }
}
