import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Static } from 'typebox'
import type { AuthenticatedClient } from '../../plugins/client-auth.js'
import type { Principal } from '../../plugins/auth.js'
import { TOKEN_TYPE_ACCESS_TOKEN, type TokenRequest } from '../../schemas/oauth.js'
import { findDelegationState, type DelegationChain } from '../../repositories/delegations.js'
import { findMayAct } from '../../repositories/agents.js'
import { actorsOf, MAX_CHAIN_LENGTH, nestAct, type ActClaim } from '../../services/delegation.js'
import { OAuthError } from '../../lib/errors.js'
import { credentialOfTokenId } from '../../lib/token-id.js'
import { requestedScopes, type Audience } from './token-parameters.js'

/**
 * The token-exchange grant (RFC 8693), decided: the authenticated client acts for the subject of
 * `subject_token`. What comes out is what the token endpoint signs and records like any issuance:
 * the subject, the scope (⊆ the subject token's effective scope ∩ the actor's capabilities), the
 * audience, the latest `exp` allowed (the subject token's), the nested `act` claim and the chain
 * the new token will depend on. Refusals are RFC 8693 §2.2.2 errors; those of a delegation are
 * audited (`access.denied`) with the chain, agent ids only.
 */

export interface ExchangeGrant {
  subject: string
  scopes: string[]
  audience: Audience
  /** the subject token's `exp`: the new token never outlives it */
  notAfter: number
  act: ActClaim
  /** the chain with the new hop, but without its issue time (`iats` one short), which the token endpoint adds */
  chain: DelegationChain
  subjectJti: string
  /** the subject token is DPoP-bound (cnf): the exchanged token must be bound too, to the actor's proof key */
  subjectBound: boolean
}

type Body = Static<typeof TokenRequest>

/** The parameters of an exchange that are the caller's mistake whatever the tokens say: invalid_request. */
function checkParameters (body: Body): { subjectToken: string, actorToken: string | undefined } {
  if (body.subject_token === undefined) throw new OAuthError(400, 'invalid_request', 'subject_token is required')
  if (body.subject_token_type !== TOKEN_TYPE_ACCESS_TOKEN) {
    throw new OAuthError(400, 'invalid_request', `subject_token_type must be ${TOKEN_TYPE_ACCESS_TOKEN}`)
  }
  if (body.requested_token_type !== undefined && body.requested_token_type !== TOKEN_TYPE_ACCESS_TOKEN) {
    throw new OAuthError(400, 'invalid_request', `requested_token_type must be ${TOKEN_TYPE_ACCESS_TOKEN}`)
  }
  if ((body.actor_token === undefined) !== (body.actor_token_type === undefined)) {
    throw new OAuthError(400, 'invalid_request', 'actor_token and actor_token_type go together')
  }
  if (body.actor_token_type !== undefined && body.actor_token_type !== TOKEN_TYPE_ACCESS_TOKEN) {
    throw new OAuthError(400, 'invalid_request', `actor_token_type must be ${TOKEN_TYPE_ACCESS_TOKEN}`)
  }
  return { subjectToken: body.subject_token, actorToken: body.actor_token }
}

/** The parameters of client_credentials that mean nothing there: refused rather than ignored. */
export function refuseExchangeParameters (body: Body): void {
  const stray = (['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'audience'] as const)
    .filter((name) => body[name] !== undefined)
  if (stray.length > 0) throw new OAuthError(400, 'invalid_request', `${stray.join(', ')}: only for the token-exchange grant`)
}

/** The token endpoint's check of the targets asked for (token.ts): the audience, or an audited invalid_target. */
export type AllowedAudience = (request: FastifyRequest, client: AuthenticatedClient, requested: string | string[] | undefined, parameter?: string) => Promise<Audience>

export function tokenExchange (app: FastifyInstance, allowedAudience: AllowedAudience) {
  const maxDepth = app.config.DELEGATION_MAX_DEPTH

  async function refuse (request: FastifyRequest, client: AuthenticatedClient, reason: string, details: Record<string, unknown>, error: OAuthError): Promise<never> {
    await app.audit.denied(request, { agentId: client.agentId, reason, details: { actorId: client.agentId, ...details } })
    throw error
  }

  /** The chain the subject token stands on, the subject first: read back for a delegated token, else the token alone. */
  async function chainOf (subject: Principal): Promise<DelegationChain | null> {
    if (!subject.delegated) {
      const credentialId = credentialOfTokenId(subject.jti) as string
      return { agents: [subject.agentId], credentials: [credentialId], iats: [subject.iat], ancestorJtis: [] }
    }
    const state = await findDelegationState(app.pg, subject.jti)
    return state === null ? null : { agents: state.agents, credentials: state.credentials, iats: state.iats, ancestorJtis: state.ancestorJtis }
  }

  return async function decideExchange (request: FastifyRequest, body: Body, client: AuthenticatedClient): Promise<ExchangeGrant> {
    const { subjectToken, actorToken } = checkParameters(body)
    if (body.resource !== undefined && body.audience !== undefined && body.resource !== body.audience) {
      throw new OAuthError(400, 'invalid_target', 'resource and audience name different targets; give one')
    }
    // the actor's audiences apply: it is the authenticated client, and the token is issued to it (client_id)
    const audience = body.resource !== undefined
      ? await allowedAudience(request, client, body.resource)
      : await allowedAudience(request, client, body.audience, 'audience')

    const validated = await app.auth.validate(subjectToken, { audience: null })
    if (!validated.ok) {
      return await refuse(request, client, 'subject_token_inactive', { failure: validated.reason },
        new OAuthError(400, 'invalid_grant', 'subject_token is not an active access token of this issuer'))
    }
    const subject = validated.principal
    if (actorToken !== undefined) {
      const actor = await app.auth.validate(actorToken, { audience: null })
      if (!actor.ok || actor.principal.agentId !== client.agentId || actor.principal.delegated) {
        return await refuse(request, client, 'actor_token_mismatch', { subjectId: subject.agentId },
          new OAuthError(400, 'invalid_grant', 'actor_token must be an active, non-delegated access token of the authenticated client'))
      }
    }

    const chain = await chainOf(subject)
    if (chain === null) {
      throw new OAuthError(400, 'invalid_grant', 'subject_token is not an active access token of this issuer')
    }
    const chainIds = [...chain.agents, client.agentId]
    const previousAct = subject.claims.act as ActClaim | undefined
    const actors = actorsOf(previousAct, MAX_CHAIN_LENGTH) ?? []
    if (client.agentId === subject.agentId || client.agentId === actors.at(-1)) {
      return await refuse(request, client, 'delegation_refused', { chain: chainIds },
        new OAuthError(400, 'invalid_grant', 'an agent does not act for itself: the token is already its own'))
    }
    if (actors.length + 1 > maxDepth) {
      return await refuse(request, client, 'delegation_too_deep', { chain: chainIds, maxDepth },
        new OAuthError(400, 'invalid_grant', `the delegation chain would have ${actors.length + 1} hops; at most ${maxDepth} are allowed`))
    }

    // who may act for whom is policy data, decided by the policy plugin like every other decision
    const previousId = actors.at(-1) ?? subject.agentId
    const mayAct = await findMayAct(app.pg, [subject.agentId, previousId])
    const decision = app.policy.decide({
      principal: { agentId: client.agentId, scopes: client.capabilities, delegated: false },
      action: 'tokens.exchange',
      target: { agentId: subject.agentId },
      delegation: {
        subject: { agentId: subject.agentId, mayAct: mayAct.get(subject.agentId) ?? [] },
        previous: { agentId: previousId, mayAct: mayAct.get(previousId) ?? [] }
      }
    })
    if (!decision.allow) {
      return await refuse(request, client, 'delegation_refused', { chain: chainIds },
        new OAuthError(400, 'invalid_grant', `agent ${client.agentId} may not act for agent ${subject.agentId}`))
    }

    const available = subject.scopes.filter((scope) => client.capabilities.includes(scope))
    const { scopes, ungranted } = requestedScopes(body.scope, available)
    if (ungranted.length > 0 || scopes.length === 0) {
      return await refuse(request, client, 'invalid_scope', { chain: chainIds, requestedScopes: ungranted },
        new OAuthError(400, 'invalid_scope', ungranted.length > 0
          ? `scope beyond what the subject token and the actor allow: ${ungranted.join(' ')}`
          : 'the subject token and the actor share no scope to delegate'))
    }

    return {
      subject: subject.agentId,
      subjectBound: typeof subject.claims.cnf === 'object' && subject.claims.cnf !== null,
      scopes,
      audience,
      notAfter: subject.exp,
      act: nestAct(client.agentId, previousAct),
      chain: {
        agents: chainIds,
        credentials: [...chain.credentials, client.credentialId],
        iats: chain.iats,
        ancestorJtis: [...chain.ancestorJtis, subject.jti]
      },
      subjectJti: subject.jti
    }
  }
}
