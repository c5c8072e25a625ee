import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify'
import type { Principal } from './auth.js'
import { loadPolicy, scopesForClientHost, type Decision, type PolicyData, type PolicyInput, type PolicyEngine } from '../services/policy.js'
import { AccessDenied, agentNotFound, forbidden, insufficientScope, ProblemError } from '../lib/errors.js'
import { isUuid } from '../lib/uuid.js'

/**
 * The authorization decision point. Routes only name the action they perform
 * (`config: { policy: 'agents.update' }`); this plugin asks the policy of POLICY_DIR
 * (services/policy.ts) before validation, audits a refusal and answers it: 404 when the caller may
 * not even see the target agent, 403 otherwise. It also publishes the platform scopes the policy
 * data defines — the only place they are defined (the metadata document lists them from here).
 *
 * Actions that hand out the target's power (`confersCapabilities`: generating or rotating a secret)
 * are decided in two looks at the same rule: the first, before validation, on what the request
 * says; the second, `authorizeTarget`, by the handler inside its transaction with the target's row
 * locked, so that the capabilities checked are the ones the new secret will carry.
 */

export interface Policy {
  readonly engine: PolicyEngine['kind']
  decide (input: PolicyInput): Decision
  /** the platform scopes in `capabilities` that `principal` does not hold and so may not grant */
  ungrantable (principal: Principal, capabilities: string[]): string[]
  /**
   * The second look for a `confersCapabilities` action, with the target agent as the row the
   * handler locked in its transaction. A refusal throws AccessDenied (403 insufficient_scope), which
   * rolls that transaction back; the plugin audits it after the handler has failed. A handler of
   * such an action that answers without calling this answers 500 instead, so a forgotten check
   * never lets a secret out. (Handlers throw AccessDenied for their own refusals too — a limit, the
   * last admin — and the plugin audits those the same way.)
   */
  authorizeTarget (request: FastifyRequest, target: { agentId: string, capabilities: string[] }): void
  readonly platformScopes: readonly string[]
  /** the scope an action requires (what the OpenAPI document lists as the operation's oauth2 scope) */
  scopeOf (action: string): string | undefined
  /**
   * the scopes granted to clients identified by a metadata document on `host` (URL.host: lower
   * case, with a port unless 443), from the policy data's `clientMetadataHosts`; empty: refused
   */
  scopesForClientHost (host: string): string[]
}

declare module 'fastify' {
  interface FastifyInstance { policy: Policy }
  interface FastifyContextConfig {
    /** the policy action this route performs; the target agent is the `agentId` path parameter */
    policy?: string
  }
}

/** Whether the action hands out its target's power (a delegation rule never does). */
function confersCapabilities (rule: PolicyData['actions'][string] | undefined): boolean {
  return rule !== undefined && 'confersCapabilities' in rule && rule.confersCapabilities === true
}

function principalInput (principal: Principal): PolicyInput['principal'] {
  return { agentId: principal.agentId, scopes: principal.scopes, delegated: principal.delegated }
}

/** The answer to a refusal: 404 for what the caller may not see, 403 (with RFC 6750's challenge) otherwise. */
function refusalProblem (decision: Exclude<Decision, { allow: true }>, action: string, targetId: string | undefined): ProblemError {
  switch (decision.reason) {
    case 'not_visible': return agentNotFound(String(targetId))
    case 'evaluation_error': return forbidden('the authorization policy could not decide; access is denied')
    case 'privilege_escalation': {
      const missing = decision.scope ?? ''
      return new ProblemError(403, 'FORBIDDEN',
        `a secret of agent ${String(targetId)} would carry scopes this token does not hold: ${missing}`,
        { 'www-authenticate': `Bearer error="insufficient_scope", scope="${missing}"` })
    }
    default: return insufficientScope(decision.scope ?? action)
  }
}

export default fp(async function policyPlugin (app: FastifyInstance) {
  const { data, engine } = await loadPolicy(app.config.POLICY_DIR, (error) => {
    app.log.error({ err: error }, 'policy evaluation failed; denying')
  })
  app.log.info({ engine: engine.kind }, 'authorization policy loaded')
  /** requests whose handler has had its target decided by authorizeTarget */
  const targetDecided = new WeakSet<FastifyRequest>()

  const policy: Policy = {
    engine: engine.kind,
    decide: (input) => engine.decide(input),
    ungrantable: (principal, capabilities) =>
      capabilities.filter((scope) => data.platformScopes.includes(scope) && !principal.scopes.includes(scope)),
    authorizeTarget (request, target) {
      const action = request.routeOptions.config.policy as string
      if (!confersCapabilities(data.actions[action])) {
        // the first look decided everything for these; a second one would only hide a mistake
        throw new Error(`authorizeTarget called for ${action}, which confers no capabilities`)
      }
      const decision = engine.decide({
        principal: principalInput(request.principal as Principal),
        action,
        target: { agentId: target.agentId, capabilities: target.capabilities }
      })
      targetDecided.add(request)
      if (decision.allow) return
      throw new AccessDenied(refusalProblem(decision, action, target.agentId), {
        agentId: target.agentId, reason: decision.reason, details: { requiredScope: decision.scope }
      })
    },
    platformScopes: data.platformScopes,
    scopeOf (action) {
      const rule = data.actions[action]
      // a delegation rule names no scope: who may act is decided by mayAct alone
      return rule !== undefined && 'scope' in rule ? rule.scope : undefined
    },
    scopesForClientHost: (host) => scopesForClientHost(data, host)
  }
  app.decorate('policy', policy)

  async function authorize (request: FastifyRequest): Promise<void> {
    const action = request.routeOptions.config.policy as string
    const principal = request.principal as Principal
    // PostgreSQL accepts upper-case UUIDs; compare the caller's own id in one canonical form
    const targetId = (request.params as { agentId?: string }).agentId?.toLowerCase()
    const decision = policy.decide({
      principal: principalInput(principal),
      action,
      target: targetId === undefined ? null : { agentId: targetId }
    })
    if (decision.allow) return
    await app.audit.denied(request, {
      agentId: isUuid(targetId) ? targetId : principal.agentId,
      reason: decision.reason,
      details: { policyAction: action, requiredScope: decision.scope }
    })
    throw refusalProblem(decision, action, targetId)
  }

  /**
   * Every handler of an action, guarded. A refusal it decides inside a transaction is thrown as
   * AccessDenied, which rolls the transaction back; it is audited here, once, after the handler has
   * failed, so that the record survives the rollback (and no route forgets it). For a
   * `confersCapabilities` action, an answer given without authorizeTarget's second look is replaced
   * by a 500 before anything (a secret) leaves.
   */
  function guardHandler (handler: RouteHandlerMethod, action: string): RouteHandlerMethod {
    const needsTarget = confersCapabilities(data.actions[action])
    return async function guardedHandler (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
      try {
        const result: unknown = await handler.call(this, request, reply)
        if (needsTarget && !targetDecided.has(request) && reply.statusCode < 400) {
          throw new Error(`the handler of ${action} answered without authorizeTarget deciding on its target`)
        }
        return result
      } catch (error) {
        if (error instanceof AccessDenied) {
          await app.audit.denied(request, { ...error.denial, details: { policyAction: action, ...error.denial.details } })
        }
        throw error
      }
    }
  }

  app.addHook('onRoute', function requirePolicy (route) {
    if (!route.url.startsWith('/api/') || route.config?.public === true) return
    const action = route.config?.policy
    // fail closed: an authenticated route that names no known action would otherwise be open to any token
    if (action === undefined || data.actions[action] === undefined) {
      throw new Error(`route ${route.method} ${route.url} declares no known policy action`)
    }
    const existing = route.preValidation === undefined ? [] : Array.isArray(route.preValidation) ? route.preValidation : [route.preValidation]
    route.preValidation = [authorize, ...existing]
    route.handler = guardHandler(route.handler, action)
  })
}, { name: 'policy', dependencies: ['config', 'auth', 'audit'], fastify: '5.x' })
