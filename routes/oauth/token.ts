import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import type { Static } from 'typebox'
import { GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN, TokenRequest, TokenResponse } from '../../schemas/oauth.js'
import { ref } from '../../schemas/common.js'
import { json, oauthErrors } from '../../schemas/responses.js'
import type { AuthenticatedClient } from '../../plugins/client-auth.js'
import { insertDelegation } from '../../repositories/delegations.js'
import { createIssuanceLog, secondsUntilNextMonth } from '../../services/issuance-log.js'
import { toAuditRecord } from '../../services/audit/record.js'
import { OAuthError, RateLimitError } from '../../lib/errors.js'
import { issueSecond } from '../../lib/token-time.js'
import { newTokenId } from '../../lib/token-id.js'
import { audienceFor, requestedScopes, type Audience } from './token-parameters.js'
import { refuseExchangeParameters, tokenExchange, type ExchangeGrant } from './token-exchange.js'
import type { VerifiedProof } from '../../services/dpop.js'

/**
 * POST /api/v1/token — the client_credentials grant (RFC 6749 §4.4), the token-exchange grant
 * (RFC 8693, decided in token-exchange.ts) and the jwt-bearer grant (RFC 7523 §2.1, its assertion
 * authenticated by plugins/client-auth.ts and assertion-auth.ts) issuing RFC 9068 access tokens. The hot path: the
 * credential and its agent (cached briefly, invalidated on every change, see
 * plugins/client-auth.ts), no argon2 for a secret this instance verified recently, one signature
 * (JWT_ALG), and the issuance's writes shared with the other requests of the moment in one commit
 * (services/issuance-log.ts).
 */

/** What a grant decided: the token's subject, scope and audience (and, for an exchange, its chain). */
type Grant = { subject: string, scopes: string[], audience: Audience, exchange?: undefined } | (ExchangeGrant & { exchange: true })

const SUPPORTED_GRANTS = [GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE, GRANT_JWT_BEARER]

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

  const decideExchange = tokenExchange(app, allowedAudience)

  function auditMethod (client: AuthenticatedClient): 'client_credentials' | 'private_key_jwt' | 'jwt_bearer' {
    return client.method === 'private_key_jwt' || client.method === 'jwt_bearer' ? client.method : 'client_credentials'
  }

  /** The client the request authenticates: by its credentials, or for the jwt-bearer grant by the assertion. */
  async function authenticate (request: FastifyRequest, body: Static<typeof TokenRequest>): Promise<AuthenticatedClient> {
    if (body.grant_type !== GRANT_JWT_BEARER) {
      if (body.assertion !== undefined) throw new OAuthError(400, 'invalid_request', `assertion: only for the ${GRANT_JWT_BEARER} grant`)
      return await app.clientAuth.authenticate(request, body, { issuing: true })
    }
    if (body.assertion === undefined) throw new OAuthError(400, 'invalid_request', `assertion is required with the ${GRANT_JWT_BEARER} grant`)
    refuseExchangeParameters(body)
    return await app.clientAuth.authenticateGrant(request, { ...body, assertion: body.assertion })
  }

  /**
   * The DPoP proof the token will be bound to (RFC 9449 §5), or null for a Bearer token. An agent
   * with dpopBound, and an exchange of a bound subject token, must send one: a stolen bound token
   * must not be turned into an unbound one.
   */
  async function boundTo (request: FastifyRequest, client: AuthenticatedClient, grant: Grant): Promise<VerifiedProof | null> {
    const proof = await app.dpop.tokenRequestProof(request)
    if (proof !== null) return proof
    const reason = client.dpopBound ? 'dpop_required' : grant.exchange === true && grant.subjectBound ? 'dpop_required_by_subject_token' : null
    if (reason === null) return null
    await refusal(request, client, reason)
    throw new OAuthError(400, 'invalid_dpop_proof', reason === 'dpop_required'
      ? 'this client must send a DPoP proof (RFC 9449)'
      : 'subject_token is DPoP-bound: the exchange needs a DPoP proof, to which the new token is bound')
  }

  /** client_credentials and jwt-bearer: the agent's own token, its scope within the agent's capabilities. */
  async function clientCredentialsGrant (request: FastifyRequest, body: Static<typeof TokenRequest>, client: AuthenticatedClient): Promise<Grant> {
    refuseExchangeParameters(body)
    const { scopes, ungranted } = requestedScopes(body.scope, client.capabilities)
    if (ungranted.length > 0) {
      // asking for more than the capabilities is an escalation attempt: refused and audited
      await refusal(request, client, 'invalid_scope', { requestedScopes: ungranted })
      throw new OAuthError(400, 'invalid_scope', `scope not granted to this client: ${ungranted.join(' ')}`)
    }
    return { subject: client.agentId, scopes, audience: await allowedAudience(request, client, body.resource) }
  }

  /**
   * RFC 8707: the targets asked for (`resource`, or for an exchange `audience`) must be the issuer or
   * among the client agent's `audiences` (for an exchange, the actor's: it is the authenticated
   * client); a refusal is invalid_target, audited like the endpoint's other refusals.
   */
  async function allowedAudience (request: FastifyRequest, client: AuthenticatedClient, requested: string | string[] | undefined, parameter = 'resource'): Promise<Audience> {
    const target = audienceFor(requested, issuer, client.audiences, parameter)
    if (target.ok) return target.audience
    await refusal(request, client, 'invalid_target', { target: target.refused })
    throw new OAuthError(400, 'invalid_target', target.description)
  }

  app.post('/api/v1/token', {
    // RFC 8707 §2: resource may be repeated (several targets, one aud each)
    config: { public: true, oauth: true, repeatableParameters: ['resource'] },
    preValidation: supportedGrant,
    schema: {
      tags: ['oauth'],
      operationId: 'issueToken',
      summary: 'Client credentials, token exchange (RFC 8693) or jwt-bearer (RFC 7523): a signed access token (RFC 9068, JWT_ALG: RS256 by default)',
      description: 'Client authentication by HTTP Basic (client_secret_basic), in the body (client_secret_post) or by a signed JWT (private_key_jwt: client_assertion): one of them. Form-encoded or JSON. ' +
        `With grant_type=${GRANT_TOKEN_EXCHANGE} the authenticated client acts for the subject of subject_token (see README, "Delegation"). ` +
        `With grant_type=${GRANT_JWT_BEARER} the assertion authenticates the agent it maps to: its own signed JWT or a federated issuer's token (see README, "Agents without secrets").`,
      security: [{ clientSecretBasic: [] }, {}],
      // JSON first: Swagger UI's Try it out starts from the first type, and it sends every field of a
      // form, an optional one too; the JSON body it starts from is the example, a request that works
      consumes: ['application/json', 'application/x-www-form-urlencoded'],
      body: ref(TokenRequest),
      response: {
        200: json(TokenResponse, 'An access token (Cache-Control: no-store)'),
        ...oauthErrors({
          400: ['invalid_request', 'invalid_scope', 'invalid_target', 'invalid_grant', 'unsupported_grant_type', 'unauthorized_client', 'invalid_dpop_proof', 'use_dpop_nonce'],
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
    const client = await authenticate(request, body)
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
    const proof = await boundTo(request, client, grant)

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
        iss: issuer,
        sub: grant.subject,
        client_id: client.agentId,
        aud: audience,
        iat,
        exp,
        jti,
        scope,
        ...(grant.exchange === true ? { act: grant.act } : {}),
        ...(proof === null ? {} : { cnf: { jkt: proof.jkt } })
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
        basis: {
          credentialId: client.credentialId,
          secretHash: client.secretHash,
          validAfterMs: client.validAfterMs,
          scopes,
          ...(client.assertion === undefined ? {} : { assertion: client.assertion })
        }
      })
    ])
    if (outcome === 'over_quota') {
      await limitBreached(request, client, 'quota_exceeded')
      throw new RateLimitError(secondsUntilNextMonth(), 'quota_exceeded', 'the monthly token quota of this client is exhausted')
    }
    if (outcome === 'stale' || outcome === 'replayed') {
      // suspended, revoked or rotated between authentication and the durable write: the change wins;
      // replayed: the assertion's durable record says it was used already (Redis had lost it)
      const reason = outcome === 'replayed' ? 'assertion_replayed' : 'client_changed_during_issuance'
      await app.audit.authFailed(request, { claimedAgentId: client.agentId, reason, method: auditMethod(client) })
      if (client.method === 'jwt_bearer') throw new OAuthError(400, 'invalid_grant', 'the assertion is not valid')
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
    // RFC 9449 §8.2: the nonce to use next, so a client never has to fail once to learn it
    if (app.dpop.nonceRequired) reply.header('dpop-nonce', app.dpop.nonces.current())
    return {
      access_token: accessToken,
      ...(grant.exchange === true ? { issued_token_type: TOKEN_TYPE_ACCESS_TOKEN } : {}),
      token_type: proof === null ? 'Bearer' as const : 'DPoP' as const,
      expires_in: exp - iat,
      scope
    }
  })
}

export default token
