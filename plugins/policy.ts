import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Principal } from './auth.js'
import { loadPolicy, type Decision, type PolicyInput, type PolicyEngine } from '../services/policy.js'
import { agentNotFound, forbidden, insufficientScope } from '../lib/errors.js'
import { isUuid } from '../lib/uuid.js'

/**
 * The authorization decision point. Routes only name the action they perform
 * (`config: { policy: 'agents.update' }`); this plugin asks the policy of POLICY_DIR
 * (services/policy.ts) before validation, audits a refusal and answers it: 404 when the caller may
 * not even see the target agent, 403 otherwise. It also publishes the platform scopes the policy
 * data defines — the only place they are defined (the metadata document lists them from here).
 */

export interface Policy {
  readonly engine: PolicyEngine['kind']
  decide (input: PolicyInput): Decision
  /** the platform scopes in `capabilities` that `principal` does not hold and so may not grant */
  ungrantable (principal: Principal, capabilities: string[]): string[]
  readonly platformScopes: readonly string[]
}

declare module 'fastify' {
  interface FastifyInstance { policy: Policy }
  interface FastifyContextConfig {
    /** the policy action this route performs; the target agent is the `agentId` path parameter */
    policy?: string
  }
}

export default fp(async function policyPlugin (app: FastifyInstance) {
  const { data, engine } = await loadPolicy(app.config.POLICY_DIR, (error) => {
    app.log.error({ err: error }, 'policy evaluation failed; denying')
  })
  app.log.info({ engine: engine.kind }, 'authorization policy loaded')
  const policy: Policy = {
    engine: engine.kind,
    decide: (input) => engine.decide(input),
    ungrantable: (principal, capabilities) =>
      capabilities.filter((scope) => data.platformScopes.includes(scope) && !principal.scopes.includes(scope)),
    platformScopes: data.platformScopes
  }
  app.decorate('policy', policy)

  async function authorize (request: FastifyRequest): Promise<void> {
    const action = request.routeOptions.config.policy as string
    const principal = request.principal as Principal
    // PostgreSQL accepts upper-case UUIDs; compare the caller's own id in one canonical form
    const targetId = (request.params as { agentId?: string }).agentId?.toLowerCase()
    const decision = policy.decide({
      principal: { agentId: principal.agentId, scopes: principal.scopes, delegated: principal.delegated },
      action,
      target: targetId === undefined ? null : { agentId: targetId }
    })
    if (decision.allow) return
    await app.audit.denied(request, {
      agentId: isUuid(targetId) ? targetId : principal.agentId,
      reason: decision.reason,
      details: { policyAction: action, requiredScope: decision.scope }
    })
    if (decision.reason === 'not_visible') throw agentNotFound(String(targetId))
    if (decision.reason === 'evaluation_error') throw forbidden('the authorization policy could not decide; access is denied')
    throw insufficientScope(decision.scope ?? action)
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
  })
}, { name: 'policy', dependencies: ['config', 'auth', 'audit'], fastify: '5.x' })
