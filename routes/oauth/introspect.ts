import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { IntrospectionResponse, TokenParameter } from '../../schemas/oauth.js'
import { ref } from '../../schemas/common.js'
import { json, oauthErrors } from '../../schemas/responses.js'
import { authenticateCaller } from './caller.js'

/**
 * POST /api/v1/token/introspect (RFC 7662). `{active:false}` — exactly that, nothing more — for
 * anything not valid at this moment by the same rules the management API applies (signature, exp,
 * revocation, suspension, credential), and for tokens the caller may not see. The scope reported is
 * the effective one: the token's scope narrowed to the agent's current capabilities.
 */
const introspect: FastifyPluginAsyncTypebox = async function introspectRoute (app) {
  app.post('/api/v1/token/introspect', {
    config: { public: true, oauth: true },
    schema: {
      tags: ['oauth'],
      operationId: 'introspectToken',
      summary: 'Token introspection (RFC 7662)',
      description: 'Caller: a Bearer token carrying tokens:read, or client credentials of an agent with tokens:read; any agent may introspect its own tokens.',
      security: [{ oauth2: ['tokens:read'] }, { bearerAuth: [] }, { clientSecretBasic: [] }, {}],
      // JSON first: Swagger UI's Try it out starts from the first type, and it sends every field of a
      // form, an optional one too; the JSON body it starts from is the example, a request that works
      consumes: ['application/json', 'application/x-www-form-urlencoded'],
      body: ref(TokenParameter),
      response: {
        200: json(IntrospectionResponse, 'The token\'s state (Cache-Control: no-store)'),
        ...oauthErrors({ 400: ['invalid_request', 'unauthorized_client'], 401: ['invalid_client'], 429: ['rate_limited'] })
      }
    }
  }, async function introspectToken (request, reply) {
    const caller = await authenticateCaller(app, request, request.body)
    const result = await app.auth.validate(request.body.token, { audience: null })
    // the client a token was issued to sees it too: for an exchanged token that is the actor (client_id)
    const visible = result.ok && ((result.principal.clientId === caller.agentId && !caller.delegated) || app.policy.decide({
      principal: caller, action: 'tokens.introspect', target: { agentId: result.principal.agentId }
    }).allow)
    await app.audit.record(request, {
      action: 'token.introspected',
      agentId: visible ? result.principal.agentId : null,
      metadata: { actorId: caller.agentId, active: visible, ...(visible ? { jti: result.principal.jti } : {}) }
    })
    reply.header('cache-control', 'no-store')
    if (!visible) return { active: false }
    const { principal } = result
    const { claims } = principal
    return {
      active: true,
      scope: principal.scopes.join(' '),
      client_id: principal.clientId,
      sub: principal.agentId,
      iss: claims.iss as string,
      aud: claims.aud as string | string[],
      exp: principal.exp,
      iat: principal.iat,
      jti: principal.jti,
      // RFC 9449 §6.2: a bound token is a DPoP token
      token_type: typeof claims.cnf === 'object' && claims.cnf !== null ? 'DPoP' as const : 'Bearer' as const,
      ...(typeof claims.act === 'object' && claims.act !== null ? { act: claims.act as Record<string, unknown> } : {}),
      ...(typeof claims.cnf === 'object' && claims.cnf !== null ? { cnf: claims.cnf as Record<string, unknown> } : {})
    }
  })
}

export default introspect
