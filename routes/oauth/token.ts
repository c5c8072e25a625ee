import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { TokenRequest, TokenResponse } from '../../schemas/oauth.js'
import { ref } from '../../schemas/common.js'
import { json, oauthErrors } from '../../schemas/responses.js'
import type { AuthenticatedClient } from '../../plugins/client-auth.js'
import { createIssuanceLog, secondsUntilNextMonth } from '../../services/issuance-log.js'
import { toAuditRecord } from '../../services/audit/record.js'
import { OAuthError, RateLimitError } from '../../lib/errors.js'
import { issueSecond } from '../../lib/token-time.js'
import { newTokenId } from '../../lib/token-id.js'

/**
 * POST /api/v1/token — the client_credentials grant (RFC 6749 §4.4) issuing RFC 9068 access
 * tokens. The hot path: the credential and its agent (cached briefly, invalidated on every change,
 * see plugins/client-auth.ts), no argon2 for a secret this instance verified recently, one RS256
 * signature, and the issuance's writes shared with the other requests of the moment in one commit
 * (services/issuance-log.ts).
 */

// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/

/** The scopes asked for, or the scopes asked for beyond the client's capabilities (`ungranted`). */
function requestedScopes (scope: string | undefined, capabilities: string[]): { scopes: string[], ungranted: string[] } {
  const asked = (scope ?? '').split(' ').filter((token) => token !== '')
  if (asked.length === 0) return { scopes: capabilities, ungranted: [] }
  if (!asked.every((token) => SCOPE_TOKEN.test(token))) throw new OAuthError(400, 'invalid_scope', 'scope is malformed')
  return { scopes: [...new Set(asked)], ungranted: asked.filter((token) => !capabilities.includes(token)) }
}

/** RFC 8707 §2: an absolute URI without a fragment. */
function audienceFor (resource: string | undefined, issuer: string): string {
  if (resource === undefined) return issuer
  // URL parsing forgives surrounding white space; an audience must be exactly what was asked for
  if (/\s/.test(resource)) throw new OAuthError(400, 'invalid_target', 'resource must not contain white space')
  let url: URL
  try {
    url = new URL(resource)
  } catch {
    throw new OAuthError(400, 'invalid_target', 'resource must be an absolute URI')
  }
  if (url.hash !== '' || resource.includes('#')) throw new OAuthError(400, 'invalid_target', 'resource must not contain a fragment')
  return resource
}

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
    if (typeof grant === 'string' && grant !== 'client_credentials') {
      throw new OAuthError(400, 'unsupported_grant_type', 'only the client_credentials grant is supported')
    }
  }

  app.post('/api/v1/token', {
    config: { public: true, oauth: true },
    preValidation: supportedGrant,
    schema: {
      tags: ['oauth'],
      operationId: 'issueToken',
      summary: 'Client credentials grant: an RS256 access token (RFC 9068)',
      description: 'Client authentication by HTTP Basic (client_secret_basic) or in the body (client_secret_post), not both. Form-encoded or JSON.',
      security: [{ clientSecretBasic: [] }, {}],
      // JSON first: Swagger UI's Try it out starts from the first type, and it sends every field of a
      // form, an optional one too; the JSON body it starts from is the example, a request that works
      consumes: ['application/json', 'application/x-www-form-urlencoded'],
      body: ref(TokenRequest),
      response: {
        200: json(TokenResponse, 'An access token (Cache-Control: no-store)'),
        ...oauthErrors({
          400: ['invalid_request', 'invalid_scope', 'invalid_target', 'unsupported_grant_type', 'unauthorized_client'],
          401: ['invalid_client'],
          429: ['rate_limited', 'quota_exceeded']
        })
      }
    }
  }, async function issueToken (request, reply) {
    const body = request.body
    if (body.grant_type !== 'client_credentials') {
      throw new OAuthError(400, 'unsupported_grant_type', 'only the client_credentials grant is supported')
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
    const { scopes, ungranted } = requestedScopes(body.scope, client.capabilities)
    if (ungranted.length > 0) {
      // asking for more than the capabilities is an escalation attempt: refused and audited
      await refusal(request, client, 'invalid_scope', { requestedScopes: ungranted })
      throw new OAuthError(400, 'invalid_scope', `scope not granted to this client: ${ungranted.join(' ')}`)
    }
    const audience = audienceFor(body.resource, issuer)

    const iat = issueSecond(Date.now(), client.validAfterMs)
    const jti = newTokenId(client.credentialId)
    const scope = scopes.join(' ')
    // The signature (libuv's threads) and the durable writes (PostgreSQL) don't depend on each other:
    // they run side by side, and the token leaves only once both are done. A token refused by the
    // quota, or whose writes failed, is dropped unsent.
    const [accessToken, outcome] = await Promise.all([
      app.keys.sign({ iss: issuer, sub: client.agentId, client_id: client.agentId, aud: audience, iat, exp: iat + ttl, jti, scope }),
      issuanceLog.record({
        event: toAuditRecord(app.audit.context(request), {
          action: 'token.issued',
          agentId: client.agentId,
          metadata: { actorId: client.agentId, jti, credentialId: client.credentialId, scope, audience, expiresAt: iat + ttl, authMethod: client.method }
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
    return { access_token: accessToken, token_type: 'Bearer' as const, expires_in: ttl, scope }
  })
}

export default token
