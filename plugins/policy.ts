import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import fp from 'fastify-plugin'
import { Type, type Static } from 'typebox'
import { Value } from 'typebox/value'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { insufficientScope, notFound } from './errors.js'
import type { Principal } from './auth.js'
import { isUuid } from '../lib/uuid.js'

/**
 * The authorization decision point. Routes only name the action they perform
 * (`config: { policy: 'agents.update' }`); who may perform it is data in POLICY_DIR, read once at
 * start. A missing or invalid policy stops the server from starting: it never runs unguarded.
 *
 * Rules (API.md): a caller holding the action's scope may act; an agent may act on itself where the
 * action allows self-service, with a non-delegated token; a caller that may not even see the target
 * agent gets 404 as if it did not exist; one that may see it but not act gets 403.
 */
const Rule = Type.Object({
  scope: Type.String({ minLength: 1 }),
  selfService: Type.Optional(Type.Boolean()),
  visibleWith: Type.Optional(Type.Array(Type.String({ minLength: 1 })))
}, { additionalProperties: false })

export const PolicyData = Type.Object({
  platformScopes: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
  actions: Type.Record(Type.String({ pattern: '^[a-z]+\\.[a-z]+$' }), Rule)
}, { additionalProperties: false })
export type PolicyData = Static<typeof PolicyData>

export interface PolicyInput {
  principal: { agentId: string, scopes: string[], delegated: boolean }
  action: string
  /** the agent acted upon; absent for collections and creation */
  target: { agentId: string } | null
}

export type Decision =
  | { allow: true }
  | { allow: false, reason: 'insufficient_scope' | 'not_visible' | 'unknown_action', scope: string | null }

/** The built-in engine: a pure function of the policy data and the input document. */
export function decide (data: PolicyData, input: PolicyInput): Decision {
  const rule = data.actions[input.action]
  if (rule === undefined) return { allow: false, reason: 'unknown_action', scope: null }
  const holds = (scope: string) => input.principal.scopes.includes(scope)
  if (holds(rule.scope)) return { allow: true }
  const self = input.target !== null && input.target.agentId === input.principal.agentId && !input.principal.delegated
  if (self && rule.selfService === true) return { allow: true }
  if (input.target !== null && !self && !(rule.visibleWith ?? []).some(holds)) {
    return { allow: false, reason: 'not_visible', scope: rule.scope }
  }
  return { allow: false, reason: 'insufficient_scope', scope: rule.scope }
}

export class PolicyLoadError extends Error {
  constructor (path: string, problem: string) {
    super(`policy ${path} ${problem}: refusing to start without a valid policy`)
    this.name = 'PolicyLoadError'
  }
}

export async function loadPolicyData (policyDir: string): Promise<PolicyData> {
  const path = join(policyDir, 'data', 'scopes.json')
  let parsed: unknown
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'))
  } catch (error) {
    throw new PolicyLoadError(path, (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'is missing' : 'is not readable JSON')
  }
  const problem = [...Value.Errors(PolicyData, parsed)][0]
  if (problem !== undefined) throw new PolicyLoadError(path, `is invalid at ${problem.instancePath || '/'}: ${problem.message}`)
  return parsed as PolicyData
}

export interface Policy {
  decide (input: PolicyInput): Decision
  /** the platform scopes in `capabilities` that `principal` does not hold and so may not grant */
  ungrantable (principal: Principal, capabilities: string[]): string[]
  readonly platformScopes: readonly string[]
}

/** The 404 every hidden or missing agent gets, identical either way. */
export const agentNotFound = (agentId: string) => notFound('AGENT_NOT_FOUND', `agent ${agentId} not found`)

declare module 'fastify' {
  interface FastifyInstance { policy: Policy }
  interface FastifyContextConfig {
    /** the policy action this route performs; the target agent is the `agentId` path parameter */
    policy?: string
  }
}

export default fp(async function policyPlugin (app: FastifyInstance) {
  const data = await loadPolicyData(app.config.POLICY_DIR)
  const policy: Policy = {
    decide: (input) => decide(data, input),
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
    await app.audit.record(request, {
      action: 'access.denied',
      outcome: 'failure',
      agentId: isUuid(targetId) ? targetId : principal.agentId,
      metadata: { policyAction: action, requiredScope: decision.scope, reason: decision.reason }
    })
    throw decision.reason === 'not_visible' ? agentNotFound(String(targetId)) : insufficientScope(decision.scope ?? action)
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
