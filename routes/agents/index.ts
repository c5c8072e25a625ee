import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Agent, AgentList, AgentParams, CreateAgent, ListAgentsQuery, UpdateAgent } from '../../schemas/agents.js'
import { ManagementErrors, NoContent, Problem } from '../../schemas/common.js'
import type { Principal } from '../../plugins/auth.js'
import {
  countAgentsOfOwner, countOtherActiveHolders, findAgent, insertAgent, listAgents, lockOwner, lockScopeHolders,
  setAgentStatus, updateAgentFields
} from '../../repositories/agents.js'
import { revokeAllCredentials } from '../../repositories/credentials.js'
import { inTransaction, type TransactionClient } from '../../repositories/transaction.js'
import type { AuditEntry } from '../../services/audit/record.js'
import { agentNotFound, conflict, ProblemError } from '../../lib/errors.js'
import { afterRevocation } from '../../plugins/vault.js'

/** The scope whose last active holder may not be suspended, decommissioned or stripped of it. */
const ADMIN_SCOPE = 'agents:write'

/**
 * A refusal decided inside a transaction. The transaction rolls back, and the refusal is audited
 * afterwards on its own so that the record survives the rollback.
 */
class Refusal {
  constructor (readonly error: ProblemError, readonly agentId: string | null, readonly reason: string) {}
}

const agents: FastifyPluginAsyncTypebox = async function agentsRoutes (app) {
  const principalOf = (request: FastifyRequest) => request.principal as Principal

  async function refuse (request: FastifyRequest, refusal: Refusal): Promise<never> {
    await app.audit.denied(request, { agentId: refusal.agentId, reason: refusal.reason, details: { policyAction: request.routeOptions.config.policy } })
    throw refusal.error
  }

  /** Platform scopes can be granted only by a caller holding them (no escalation through capabilities). */
  function grantRefusal (request: FastifyRequest, capabilities: string[] | undefined, agentId: string | null): Refusal | null {
    const ungrantable = capabilities === undefined ? [] : app.policy.ungrantable(principalOf(request), capabilities)
    if (ungrantable.length === 0) return null
    // RFC 6750 §3.1: the token lacks privileges the request needs, so the 403 says insufficient_scope
    const detail = `you cannot grant scopes you do not hold: ${ungrantable.join(', ')}`
    const challenge = `Bearer error="insufficient_scope", scope="${ungrantable.join(' ')}"`
    return new Refusal(new ProblemError(403, 'FORBIDDEN', detail, { 'www-authenticate': challenge }), agentId, 'ungrantable_scope')
  }

  app.post('/api/v1/agents', {
    config: { policy: 'agents.create' },
    schema: {
      tags: ['agents'],
      operationId: 'createAgent',
      summary: 'Register an agent',
      security: [{ bearerAuth: [] }],
      body: CreateAgent,
      response: { 201: Agent, ...ManagementErrors, 409: Problem }
    }
  }, async function createAgent (request, reply) {
    const input = request.body
    const notGrantable = grantRefusal(request, input.capabilities, principalOf(request).agentId)
    if (notGrantable !== null) return await refuse(request, notGrantable)
    const limit = app.config.MAX_AGENTS_PER_OWNER
    const result = await inTransaction(app.pg.pool, async function registerAgent (db) {
      if (limit > 0) {
        await lockOwner(db, input.owner)
        if (await countAgentsOfOwner(db, input.owner) >= limit) {
          return new Refusal(new ProblemError(403, 'FREE_TIER_LIMIT_EXCEEDED',
            `owner "${input.owner}" already has the maximum of ${limit} agents`), principalOf(request).agentId, 'free_tier_limit')
        }
      }
      const agent = await insertAgent(db, input)
      await app.audit.record(request, {
        action: 'agent.created',
        agentId: agent.agentId,
        metadata: { agentType: agent.agentType, deploymentEnv: agent.deploymentEnv, capabilities: agent.capabilities }
      }, db)
      return agent
    })
    if (result instanceof Refusal) return await refuse(request, result)
    app.metrics?.agentRegistered(result.deploymentEnv)
    reply.code(201)
    return result
  })

  app.get('/api/v1/agents', {
    config: { policy: 'agents.list' },
    schema: {
      tags: ['agents'],
      operationId: 'listAgents',
      summary: 'List agents, newest first',
      security: [{ bearerAuth: [] }],
      querystring: ListAgentsQuery,
      response: { 200: AgentList, ...ManagementErrors }
    }
  }, async function listAgentsRoute (request) {
    return await listAgents(app.pg, request.query)
  })

  app.get('/api/v1/agents/:agentId', {
    config: { policy: 'agents.read' },
    schema: {
      tags: ['agents'],
      operationId: 'getAgent',
      summary: 'Read one agent (its own token may read itself)',
      security: [{ bearerAuth: [] }],
      params: AgentParams,
      response: { 200: Agent, ...ManagementErrors }
    }
  }, async function getAgent (request) {
    const agent = await findAgent(app.pg, request.params.agentId)
    if (agent === null) throw agentNotFound(request.params.agentId)
    return agent
  })

  /**
   * One change of an agent, in one transaction: field updates, a status transition, and for
   * decommissioning the revocation of every credential. Exactly one event describes the change
   * (plus one `credential.revoked` per credential a decommissioning revokes).
   */
  async function changeAgent (request: FastifyRequest, agentId: string, patch: UpdateAgent): Promise<Agent> {
    const result = await inTransaction(app.pg.pool, async function applyAgentChange (db): Promise<Agent | Refusal> {
      const current = await findAgent(db, agentId, { forUpdate: true })
      if (current === null) throw agentNotFound(agentId)
      if (current.status === 'decommissioned') throw conflict('AGENT_ALREADY_DECOMMISSIONED', `agent ${agentId} is decommissioned`)
      const refusal = grantRefusal(request, patch.capabilities, agentId) ??
        await lastAdminRefusal(db, current, patch)
      if (refusal !== null) return refusal

      const { status, ...fields } = patch
      const changed = Object.keys(fields).filter((key) =>
        JSON.stringify(fields[key as keyof typeof fields]) !== JSON.stringify(current[key as keyof Agent]))
      await updateAgentFields(db, agentId, fields)
      const events: AuditEntry[] = []
      const transition = status !== undefined && status !== current.status ? status : undefined
      if (transition !== undefined) {
        await setAgentStatus(db, agentId, transition)
        const action = transition === 'active' ? 'agent.reactivated' : transition === 'suspended' ? 'agent.suspended' : 'agent.decommissioned'
        events.push({ action, agentId, metadata: { from: current.status, to: transition, changed } })
        if (transition === 'decommissioned') {
          const revoked = await revokeAllCredentials(db, agentId)
          events.push(...revoked.map((credentialId): AuditEntry => ({
            action: 'credential.revoked', agentId, metadata: { credentialId, reason: 'agent_decommissioned' }
          })))
        }
      } else if (changed.length > 0) {
        events.push({ action: 'agent.updated', agentId, metadata: { changed } })
      }
      await app.audit.recordMany(request, events, db)
      return await findAgent(db, agentId) as Agent
    })
    if (result instanceof Refusal) return await refuse(request, result)
    // the token endpoint must see a new status or narrower capabilities now, on every instance
    await app.clientDirectory.changed({ agentId })
    if (result.status === 'decommissioned') await afterRevocation(app, agentId)
    return result
  }

  /** The last active agent able to administer agents must stay able to: otherwise nobody can. */
  async function lastAdminRefusal (db: TransactionClient, current: Agent, patch: UpdateAgent): Promise<Refusal | null> {
    const isHolder = current.status === 'active' && current.capabilities.includes(ADMIN_SCOPE)
    const staysHolder = (patch.status ?? current.status) === 'active' && (patch.capabilities ?? current.capabilities).includes(ADMIN_SCOPE)
    if (!isHolder || staysHolder) return null
    await lockScopeHolders(db, ADMIN_SCOPE)
    if (await countOtherActiveHolders(db, ADMIN_SCOPE, current.agentId) > 0) return null
    return new Refusal(conflict('CONFLICT', `agent ${current.agentId} is the last active agent holding ${ADMIN_SCOPE}`), current.agentId, 'last_admin')
  }

  app.patch('/api/v1/agents/:agentId', {
    config: { policy: 'agents.update' },
    schema: {
      tags: ['agents'],
      operationId: 'updateAgent',
      summary: 'Update, suspend, reactivate or decommission an agent',
      security: [{ bearerAuth: [] }],
      params: AgentParams,
      body: UpdateAgent,
      response: { 200: Agent, ...ManagementErrors, 409: Problem }
    }
  }, async function updateAgent (request) {
    return await changeAgent(request, request.params.agentId, request.body)
  })

  app.delete('/api/v1/agents/:agentId', {
    config: { policy: 'agents.decommission' },
    schema: {
      tags: ['agents'],
      operationId: 'decommissionAgent',
      summary: 'Decommission an agent (final): revokes its credentials and tokens',
      security: [{ bearerAuth: [] }],
      params: AgentParams,
      response: { 204: NoContent, ...ManagementErrors, 409: Problem }
    }
  }, async function decommissionAgent (request, reply) {
    await changeAgent(request, request.params.agentId, { status: 'decommissioned' })
    reply.code(204)
    return null
  })
}

export default agents
