import { Type } from 'typebox'
import { decodeJwt } from 'jose'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { TokenParameter } from '../../schemas/oauth.js'
import { ref } from '../../schemas/common.js'
import { oauthErrors } from '../../schemas/responses.js'
import { recordRevokedToken } from '../../repositories/tokens.js'
import { OAuthError } from '../../lib/errors.js'
import { isUuid } from '../../lib/uuid.js'
import { credentialOfTokenId } from '../../lib/token-id.js'
import { authenticateCaller } from './caller.js'

/**
 * POST /api/v1/token/revoke (RFC 7009). The token's own client, or a holder of agents:write, may
 * revoke it; the revocation is durable (revoked_tokens) and every instance refuses the
 * token from the next request on. A token that is unknown, malformed or already expired gets the
 * same 200 as a revoked one (§2.2): there is nothing left to revoke. token_type_hint is ignored.
 */
const revoke: FastifyPluginAsyncTypebox = async function revokeRoute (app) {
  app.post('/api/v1/token/revoke', {
    config: { public: true, oauth: true },
    schema: {
      tags: ['oauth'],
      operationId: 'revokeToken',
      summary: 'Token revocation (RFC 7009)',
      security: [{ oauth2: [] }, { bearerAuth: [] }, { clientSecretBasic: [] }, {}],
      // JSON first: Swagger UI's Try it out starts from the first type, and it sends every field of a
      // form, an optional one too; the JSON body it starts from is the example, a request that works
      consumes: ['application/json', 'application/x-www-form-urlencoded'],
      body: ref(TokenParameter),
      response: {
        200: Type.Unsafe<void>({ type: 'null', description: 'Revoked, or nothing to revoke (an unknown or expired token): an empty body' }),
        ...oauthErrors({ 400: ['invalid_request', 'unauthorized_client'], 401: ['invalid_client'], 429: ['rate_limited'] })
      }
    }
  }, async function revokeToken (request, reply) {
    const caller = await authenticateCaller(app, request, request.body)
    reply.header('cache-control', 'no-store')
    const subject = await revocableSubject(request.body.token)
    if (subject === null) return reply.code(200).send()

    // the client a token was issued to may revoke it (RFC 7009 §2.1): for an exchanged token that is
    // the actor (client_id), not the subject (sub) the policy's self-service looks at
    const issuedToCaller = subject.clientId === caller.agentId && !caller.delegated
    const decision = issuedToCaller ? { allow: true } : app.policy.decide({ principal: caller, action: 'tokens.revoke', target: { agentId: subject.agentId } })
    if (!decision.allow) {
      await app.audit.denied(request, { agentId: subject.agentId, reason: 'not_token_owner', details: { actorId: caller.agentId, jti: subject.jti } })
      throw new OAuthError(400, 'unauthorized_client', 'this client may not revoke a token issued to another client')
    }
    if (await recordRevokedToken(app.pg, subject.jti, subject.agentId, subject.exp)) {
      await app.audit.record(request, {
        action: 'token.revoked',
        agentId: subject.agentId,
        metadata: { actorId: caller.agentId, jti: subject.jti }
      })
    }
    return reply.code(200).send()
  })

  /** The agent, jti and expiry of a token this issuer signed and that has not expired; null otherwise. */
  async function revocableSubject (token: string): Promise<{ agentId: string, clientId: string | null, jti: string, exp: number } | null> {
    try {
      const claims = decodeJwt(token)
      const { payload } = await app.keys.verify(token, { issuer: app.config.ISSUER_URL, audience: claims.aud ?? app.config.ISSUER_URL })
      const jti = payload.jti as string
      return isUuid(payload.sub) && credentialOfTokenId(jti) !== null
        ? { agentId: payload.sub.toLowerCase(), clientId: typeof payload.client_id === 'string' ? payload.client_id.toLowerCase() : null, jti, exp: payload.exp as number }
        : null
    } catch {
      return null
    }
  }
}

export default revoke
