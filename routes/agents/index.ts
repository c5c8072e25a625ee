import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { Agent, AgentList, AgentParams, CreateAgent, ListAgentsQuery, UpdateAgent, type FederatedSubject } from '../../schemas/agents.js'
import { NoContent, ref } from '../../schemas/common.js'
import { json, managementErrors } from '../../schemas/responses.js'
import type { Principal } from '../../plugins/auth.js'
import {
  countAgentsOfOwner, findAgent, insertAgent, listAgents, lockOwner, setAgentStatus, updateAgentFields
} from '../../repositories/agents.js'
import { revokeAllCredentials } from '../../repositories/credentials.js'
import { replaceFederatedSubjects, unknownFederationIssuers } from '../../repositories/agent-keys.js'
import { inTransaction, type TransactionClient } from '../../repositories/transaction.js'
import type { AuditEntry } from '../../services/audit/record.js'
import { ADMIN_SCOPE, holdsAdminScope, isLastUsableAdmin } from '../../services/last-admin.js'
import { AccessDenied, agentNotFound, conflict, ProblemError, validationError } from '../../lib/errors.js'
import { resourceUriProblem } from '../../lib/resource-uri.js'
import { afterRevocation } from '../../plugins/vault.js'

/*
 * Refusals are thrown as AccessDenied: one decided inside a transaction rolls it back, and the
 * policy plugin audits it once the handler has failed, so that the record survives the rollback.
 */

const agents: FastifyPluginAsyncTypebox = async function agentsRoutes (app) {
  const principalOf = (request: FastifyRequest) => request.principal as Principal

  /** Platform scopes can be granted only by a caller holding them (no escalation through capabilities). */
  function assertGrantable (request: FastifyRequest, capabilities: string[] | undefined, agentId: string): void {
    const ungrantable = capabilities === undefined ? [] : app.policy.ungrantable(principalOf(request), capabilities)
    if (ungrantable.length === 0) return
    // RFC 6750 §3.1: the token lacks privileges the request needs, so the 403 says insufficient_scope
    const detail = `you cannot grant scopes you do not hold: ${ungrantable.join(', ')}`
    const challenge = `Bearer error="insufficient_scope", scope="${ungrantable.join(' ')}"`
    throw new AccessDenied(new ProblemError(403, 'FORBIDDEN', detail, { 'www-authenticate': challenge }), { agentId, reason: 'ungrantable_scope' })
  }

  /** RFC 8707: an agent's audiences are what a token's `resource` may name, by the same rule. */
  function assertAudiences (audiences: string[] | undefined): void {
    const problems = (audiences ?? []).flatMap((audience, index) => {
      const problem = resourceUriProblem(audience, `audiences[${index}]`)
      return problem === null ? [] : [{ field: `body.audiences[${index}]`, message: problem }]
    })
    if (problems.length > 0) throw validationError(problems.map((problem) => problem.message).join('; '), problems)
  }

  /**
   * Federated subjects let whoever holds the external identity act as the agent, as a secret does:
   * setting them follows the no-escalation rule of credentials (the agent's platform capabilities ⊆
   * the caller's scopes), and each names a registered issuer.
   */
  async function assertFederable (db: TransactionClient, request: FastifyRequest, target: { agentId: string, capabilities: string[] }, subjects: FederatedSubject[]): Promise<void> {
    const beyond = app.policy.ungrantable(principalOf(request), target.capabilities)
    if (beyond.length > 0) {
      const detail = `federated subjects of agent ${target.agentId} would act with scopes this token does not hold: ${beyond.join(', ')}`
      throw new AccessDenied(new ProblemError(403, 'FORBIDDEN', detail, { 'www-authenticate': `Bearer error="insufficient_scope", scope="${beyond.join(' ')}"` }),
        { agentId: target.agentId, reason: 'privilege_escalation', details: { requiredScope: beyond.join(' ') } })
    }
    const unknown = await unknownFederationIssuers(db, subjects.map((entry) => entry.issuer))
    if (unknown.length > 0) {
      throw validationError(`not a registered federation issuer: ${unknown.join(', ')}`,
        unknown.map((issuer) => ({ field: 'federatedSubjects', message: `${issuer} is not registered at /api/v1/federation/issuers` })))
    }
  }

  /**
   * MAX_AGENTS_PER_OWNER, for a registration or a move to `owner`: takes the owner's lock for the
   * rest of the transaction, so that concurrent registrations and moves for one owner are counted
   * one after the other, then refuses when the owner has no place left.
   */
  async function assertOwnerHasRoom (db: TransactionClient, owner: string, agentId: string): Promise<void> {
    const limit = app.config.MAX_AGENTS_PER_OWNER
    if (limit === 0) return
    await lockOwner(db, owner)
    if (await countAgentsOfOwner(db, owner) < limit) return
    throw new AccessDenied(new ProblemError(403, 'FREE_TIER_LIMIT_EXCEEDED', `owner "${owner}" already has the maximum of ${limit} agents`),
      { agentId, reason: 'free_tier_limit', details: { owner } })
  }

  app.post('/api/v1/agents', {
    config: { policy: 'agents.create' },
    schema: {
      tags: ['agents'],
      operationId: 'createAgent',
      summary: 'Register an agent',
      body: ref(CreateAgent),
      response: {
        201: json(Agent, 'Registered'),
        ...managementErrors({ 403: ['FORBIDDEN', 'FREE_TIER_LIMIT_EXCEEDED'], 409: ['AGENT_ALREADY_EXISTS'] })
      }
    }
  }, async function createAgent (request, reply) {
    const input = request.body
    const callerId = principalOf(request).agentId
    assertGrantable(request, input.capabilities, callerId)
    assertAudiences(input.audiences)
    const agent = await inTransaction(app.pg.pool, async function registerAgent (db) {
      await assertOwnerHasRoom(db, input.owner, callerId)
      const inserted = await insertAgent(db, input)
      if (input.federatedSubjects !== undefined && input.federatedSubjects.length > 0) {
        await assertFederable(db, request, inserted, input.federatedSubjects)
        await replaceFederatedSubjects(db, inserted.agentId, input.federatedSubjects)
      }
      const created = await findAgent(db, inserted.agentId) as Agent
      await app.audit.record(request, {
        action: 'agent.created',
        agentId: created.agentId,
        metadata: {
          agentType: created.agentType,
          deploymentEnv: created.deploymentEnv,
          capabilities: created.capabilities,
          authMethods: created.authMethods,
          federatedSubjects: created.federatedSubjects.map(({ issuer, subject }) => ({ issuer, subject }))
        }
      }, db)
      return created
    })
    app.metrics?.agentRegistered(agent.deploymentEnv)
    reply.code(201)
    return agent
  })

  app.get('/api/v1/agents', {
    config: { policy: 'agents.list' },
    schema: {
      tags: ['agents'],
      operationId: 'listAgents',
      summary: 'List agents, newest first',
      querystring: ListAgentsQuery,
      response: { 200: json(AgentList, 'A page of agents'), ...managementErrors() }
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
      params: AgentParams,
      response: { 200: json(Agent, 'The agent'), ...managementErrors({ 404: ['AGENT_NOT_FOUND'] }) }
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
    const agent = await inTransaction(app.pg.pool, async function applyAgentChange (db): Promise<Agent> {
      const current = await findAgent(db, agentId, { forUpdate: true })
      if (current === null) throw agentNotFound(agentId)
      if (current.status === 'decommissioned') throw conflict('AGENT_ALREADY_DECOMMISSIONED', `agent ${agentId} is decommissioned`)
      assertGrantable(request, patch.capabilities, agentId)
      // a move to another owner takes a place there, as a registration would (an agent is never
      // counted twice: one already the owner's takes no new place)
      if (patch.owner !== undefined && patch.owner !== current.owner) await assertOwnerHasRoom(db, patch.owner, agentId)
      await assertNotLastAdmin(db, current, patch)

      const { status, federatedSubjects, ...fields } = patch
      const changed = Object.keys({ ...fields, ...(federatedSubjects === undefined ? {} : { federatedSubjects }) }).filter((key) =>
        JSON.stringify(patch[key as keyof UpdateAgent]) !== JSON.stringify(current[key as keyof Agent]))
      await updateAgentFields(db, agentId, fields)
      if (federatedSubjects !== undefined && changed.includes('federatedSubjects')) {
        // checked on the capabilities the agent keeps after this change, as a new secret would be
        await assertFederable(db, request, { agentId, capabilities: fields.capabilities ?? current.capabilities }, federatedSubjects)
        await replaceFederatedSubjects(db, agentId, federatedSubjects)
      }
      // who may act for the agent is part of the record: a new list (agent ids only) is in the event
      const mayActChange = changed.includes('mayAct') ? { mayAct: fields.mayAct } : {}
      const events: AuditEntry[] = []
      const transition = status !== undefined && status !== current.status ? status : undefined
      if (transition !== undefined) {
        await setAgentStatus(db, agentId, transition)
        const action = transition === 'active' ? 'agent.reactivated' : transition === 'suspended' ? 'agent.suspended' : 'agent.decommissioned'
        events.push({ action, agentId, metadata: { from: current.status, to: transition, changed, ...mayActChange } })
        if (transition === 'decommissioned') {
          const revoked = await revokeAllCredentials(db, agentId)
          events.push(...revoked.map((credentialId): AuditEntry => ({
            action: 'credential.revoked', agentId, metadata: { credentialId, reason: 'agent_decommissioned' }
          })))
        }
      } else if (changed.length > 0) {
        events.push({ action: 'agent.updated', agentId, metadata: { changed, ...mayActChange } })
      }
      await app.audit.recordMany(request, events, db)
      return await findAgent(db, agentId) as Agent
    })
    // the token endpoint must see a new status or narrower capabilities now, on every instance
    await app.clientDirectory.changed({ agentId })
    if (agent.status === 'decommissioned') await afterRevocation(app, agentId)
    return agent
  }

  /** The last agent able to administer agents must stay able to: otherwise nobody can (services/last-admin.ts). */
  async function assertNotLastAdmin (db: TransactionClient, current: Agent, patch: UpdateAgent): Promise<void> {
    const staysHolder = holdsAdminScope({ status: patch.status ?? current.status, capabilities: patch.capabilities ?? current.capabilities })
    if (!holdsAdminScope(current) || staysHolder) return
    if (!await isLastUsableAdmin(db, current.agentId)) return
    throw new AccessDenied(conflict('CONFLICT', `agent ${current.agentId} is the last agent able to use ${ADMIN_SCOPE}`),
      { agentId: current.agentId, reason: 'last_admin' })
  }

  app.patch('/api/v1/agents/:agentId', {
    config: { policy: 'agents.update' },
    schema: {
      tags: ['agents'],
      operationId: 'updateAgent',
      summary: 'Update, suspend, reactivate or decommission an agent',
      params: AgentParams,
      body: ref(UpdateAgent),
      response: {
        200: json(Agent, 'The agent as changed'),
        ...managementErrors({
          403: ['FORBIDDEN', 'FREE_TIER_LIMIT_EXCEEDED'],
          404: ['AGENT_NOT_FOUND'],
          409: ['AGENT_ALREADY_DECOMMISSIONED', 'CONFLICT']
        })
      }
    }
  }, async function updateAgent (request) {
    assertAudiences(request.body.audiences)
    return await changeAgent(request, request.params.agentId, request.body)
  })

  app.delete('/api/v1/agents/:agentId', {
    config: { policy: 'agents.decommission' },
    schema: {
      tags: ['agents'],
      operationId: 'decommissionAgent',
      summary: 'Decommission an agent (final): revokes its credentials and tokens',
      params: AgentParams,
      response: {
        204: NoContent,
        ...managementErrors({ 404: ['AGENT_NOT_FOUND'], 409: ['AGENT_ALREADY_DECOMMISSIONED', 'CONFLICT'] })
      }
    }
  }, async function decommissionAgent (request, reply) {
    await changeAgent(request, request.params.agentId, { status: 'decommissioned' })
    reply.code(204)
    return null
  })
}

export default agents
