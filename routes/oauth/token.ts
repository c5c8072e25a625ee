import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import type { Static } from 'typebox'
import { GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN, TokenRequest, TokenResponse } from '../../schemas/oauth.js'
import { ref } from '../../schemas/common.js'
import { json, oauthErrors } from '../../schemas/responses.js'
import type { AuthenticatedClient } from '../../plugins/client-auth.js'
import { insertDelegation } from '../../repositories/delegations.js'
import { createIssuanceLog, secondsUntilNextMonth } from '../../services/issuance-log.js'
import { toAuditRecord } from '../../services/audit/record.js'
import { OAuthError, RateLimitError } from '../../lib/errors.js'
import { issueSecond } from '../../lib/token-time.js'
import { newTokenId } from '../../lib/token-id.js'
import { audienceFor, requestedScopes } from './token-parameters.js'
import { refuseExchangeParameters, tokenExchange, type ExchangeGrant } from './token-exchange.js'

/**
 * POST /api/v1/token — the client_credentials grant (RFC 6749 §4.4) and the token-exchange grant
 * (RFC 8693, decided in token-exchange.ts) issuing RFC 9068 access tokens. The hot path: the
 * credential and its agent (cached briefly, invalidated on every change, see
 * plugins/client-auth.ts), no argon2 for a secret this instance verified recently, one RS256
 * signature, and the issuance's writes shared with the other requests of the moment in one commit
 * (services/issuance-log.ts).
 */

/** What a grant decided: the token's subject, scope and audience (and, for an exchange, its chain). */
type Grant = { subject: string, scopes: string[], audience: string, exchange?: undefined } | (ExchangeGrant & { exchange: true })

const SUPPORTED_GRANTS = [GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE]

const token: FastifyPluginAsyncTypebox = async function tokenRoute (app) {
  const issuer = app.config.ISSUER_URL
  const ttl = app.config.TOKEN_TTL_SECONDS
  const issuanceLog = createIssuanceLog({ pool: app.pg.pool, quota: app.config.TOKEN_MONTHLY_QUOTA, onWritten: () => { app.audit.written() } })
  const perClientLimit = app.config.RATE_LIMIT_TOKEN_PER_CLIENT
  const tokenRequestsPerClient = perClientLimit === 0
    ? null
    : app.createRateLimit({
      max: perClientLimit,
      timeWindow: 60_000,
      keyGenerator: (request) => `token:${request.oauthClient?.agentId ?? ''}`
    })

  async function refusal (request: FastifyRequest, client: AuthenticatedClient, reason: string, details: Record<string, unknown> = {}): Promise<void> {
    await app.audit.denied(request, { agentId: client.agentId, reason, details: { actorId: client.agentId, ...details } })
  }

  /**
   * A refusal a client repeats for as long as it keeps asking (past its rate, its quota spent): the
   * first from an address written as `refusal` writes it, the next ones counted into a summary
   * (plugins/audit.ts), so a client in a retry loop can't fill the audit log.
   */
  async function limitBreached (request: FastifyRequest, client: AuthenticatedClient, reason: string): Promise<void> {
    await app.audit.limitBreached(request, { agentId: client.agentId, reason, details: { actorId: client.agentId } })
  }

  /**
   * The grant first (RFC 6749 §5.2): a request for a grant this server does not do is
   * unsupported_grant_type, whatever parameters that grant carries (username, password, code, …),
   * before the body's schema would call them unknown.
   */
  async function supportedGrant (request: FastifyRequest): Promise<void> {
    const grant = (request.body as { grant_type?: unknown } | null)?.grant_type
    if (typeof grant === 'string' && !SUPPORTED_GRANTS.includes(grant)) {
      throw new OAuthError(400, 'unsupported_grant_type', `supported grants: ${SUPPORTED_GRANTS.join(', ')}`)
    }
  }

  const decideExchange = tokenExchange(app)

  /** client_credentials: the client's own token, its scope within the client's capabilities. */
  async function clientCredentialsGrant (request: FastifyRequest, body: Static<typeof TokenRequest>, client: AuthenticatedClient): Promise<Grant> {
    refuseExchangeParameters(body)
    const { scopes, ungranted } = requestedScopes(body.scope, client.capabilities)
    if (ungranted.length > 0) {
      // asking for more than the capabilities is an escalation attempt: refused and audited
      await refusal(request, client, 'invalid_scope', { requestedScopes: ungranted })
      throw new OAuthError(400, 'invalid_scope', `scope not granted to this client: ${ungranted.join(' ')}`)
    }
    return { subject: client.agentId, scopes, audience: audienceFor(body.resource, issuer) }
  }

  app.post('/api/v1/token', {
    config: { public: true, oauth: true },
    preValidation: supportedGrant,
    schema: {
      tags: ['oauth'],
      operationId: 'issueToken',
      summary: 'Client credentials or token exchange (RFC 8693): an RS256 access token (RFC 9068)',
      description: 'Client authentication by HTTP Basic (client_secret_basic) or in the body (client_secret_post), not both. Form-encoded or JSON. ' +
        `With grant_type=${GRANT_TOKEN_EXCHANGE} the authenticated client acts for the subject of subject_token (see README, "Delegation").`,
      security: [{ clientSecretBasic: [] }, {}],
      // JSON first: Swagger UI's Try it out starts from the first type, and it sends every field of a
      // form, an optional one too; the JSON body it starts from is the example, a request that works
      consumes: ['application/json', 'application/x-www-form-urlencoded'],
      body: ref(TokenRequest),
      response: {
        200: json(TokenResponse, 'An access token (Cache-Control: no-store)'),
        ...oauthErrors({
          400: ['invalid_request', 'invalid_scope', 'invalid_target', 'invalid_grant', 'unsupported_grant_type', 'unauthorized_client'],
          401: ['invalid_client'],
          429: ['rate_limited', 'quota_exceeded']
        })
      }
    }
  }, async function issueToken (request, reply) {
    const body = request.body
    if (!SUPPORTED_GRANTS.includes(body.grant_type)) {
      throw new OAuthError(400, 'unsupported_grant_type', `supported grants: ${SUPPORTED_GRANTS.join(', ')}`)
    }
    const client = await app.clientAuth.authenticate(request, body)
    // every token request of the client counts, refused ones too: past the limit, even a request
    // that would be refused for its scope costs no audit row of its own
    if (tokenRequestsPerClient !== null) {
      const window = await tokenRequestsPerClient(request)
      if (!window.isAllowed && window.isExceeded) {
        await limitBreached(request, client, 'rate_limited')
        throw new RateLimitError(Math.max(1, window.ttlInSeconds), 'rate_limited', 'too many token requests for this client; retry later')
      }
    }
    const grant: Grant = body.grant_type === GRANT_TOKEN_EXCHANGE
      ? { ...await decideExchange(request, body, client), exchange: true }
      : await clientCredentialsGrant(request, body, client)
    const { scopes, audience } = grant

    const iat = issueSecond(Date.now(), client.validAfterMs)
    // a delegated token never outlives the token it was exchanged for
    const exp = grant.exchange === true ? Math.min(iat + ttl, grant.notAfter) : iat + ttl
    if (exp <= iat) throw new OAuthError(400, 'invalid_grant', 'subject_token expires now')
    const jti = newTokenId(client.credentialId)
    const scope = scopes.join(' ')
    // the chain is durable before the token exists: validation of a delegated token reads it
    if (grant.exchange === true) await insertDelegation(app.pg, jti, { ...grant.chain, iats: [...grant.chain.iats, iat] }, exp)
    // The signature (libuv's threads) and the durable writes (PostgreSQL) don't depend on each other:
    // they run side by side, and the token leaves only once both are done. A token refused by the
    // quota, or whose writes failed, is dropped unsent.
    const [accessToken, outcome] = await Promise.all([
      app.keys.sign({
        iss: issuer, sub: grant.subject, client_id: client.agentId, aud: audience, iat, exp, jti, scope, ...(grant.exchange === true ? { act: grant.act } : {})
      }),
      issuanceLog.record({
        // an exchange counts against the acting agent's quota, like its own tokens
        event: toAuditRecord(app.audit.context(request), {
          action: grant.exchange === true ? 'token.exchanged' : 'token.issued',
          agentId: client.agentId,
          metadata: {
            actorId: client.agentId, jti, credentialId: client.credentialId, scope, audience, expiresAt: exp, authMethod: client.method,
            ...(grant.exchange === true ? { subjectId: grant.subject, subjectJti: grant.subjectJti, chain: grant.chain.agents } : {})
          }
        }),
        basis: { credentialId: client.credentialId, secretHash: client.secretHash, validAfterMs: client.validAfterMs, scopes }
      })
    ])
    if (outcome === 'over_quota') {
      await limitBreached(request, client, 'quota_exceeded')
      throw new RateLimitError(secondsUntilNextMonth(), 'quota_exceeded', 'the monthly token quota of this client is exhausted')
    }
    if (outcome === 'stale') {
      // suspended, revoked or rotated between authentication and the durable write: the change wins
      await app.audit.authFailed(request, { claimedAgentId: client.agentId, reason: 'client_changed_during_issuance', method: 'client_credentials' })
      throw new OAuthError(401, 'invalid_client', 'client authentication failed',
        client.method === 'client_secret_basic' ? { 'www-authenticate': 'Basic realm="agentidp", charset="UTF-8"' } : {})
    }
    if (outcome === 'narrowed') {
      // capabilities narrowed between authentication and the durable write: the token would carry a
      // scope the agent no longer has, so none leaves; asked again, the client gets what it has now
      await refusal(request, client, 'capabilities_changed_during_issuance', { requestedScopes: scopes })
      throw new OAuthError(400, 'invalid_scope', 'the client\'s capabilities changed while the token was being issued; ask again')
    }
    for (const granted of scopes) app.metrics?.tokensIssued(granted)
    reply.headers({ 'cache-control': 'no-store', pragma: 'no-cache' })
    return {
      access_token: accessToken,
      ...(grant.exchange === true ? { issued_token_type: TOKEN_TYPE_ACCESS_TOKEN } : {}),
      token_type: 'Bearer' as const,
      expires_in: exp - iat,
      scope
    }
  })
}

export default token
