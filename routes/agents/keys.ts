import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyRequest } from 'fastify'
import { AgentParams } from '../../schemas/agents.js'
import { ref } from '../../schemas/common.js'
import { AgentKeys, PutAgentKeys } from '../../schemas/agent-keys.js'
import { json, managementErrors } from '../../schemas/responses.js'
import { findAgent } from '../../repositories/agents.js'
import { findAgentKeys, replaceAgentKeys } from '../../repositories/agent-keys.js'
import { inTransaction, type Queryable } from '../../repositories/transaction.js'
import { agentNotFound, conflict, validationError } from '../../lib/errors.js'
import { AGENT_KEY_ALGORITHMS, JwksProblem, MAX_AGENT_KEYS, readPublicJwks, type PublicKey } from '../../lib/public-jwk.js'

/**
 * An agent's public keys: PUT replaces them (self-service with an unnarrowed token, or
 * credentials:write under the no-escalation rule — keys hand out the agent's power as a secret
 * does, so the policy decides a second time on the locked row), GET reads them. A key that a PUT
 * leaves out is removed and every token it authenticated stops at once (its credentials row is
 * revoked: repositories/agent-keys.ts); a key that stays keeps its tokens.
 */
const BODY_LIMIT = 64 * 1024

function keysOf (body: PutAgentKeys): PublicKey[] {
  if (body.jwks === undefined || body.jwks.keys.length === 0) return []
  try {
    return readPublicJwks(body.jwks, { algorithms: AGENT_KEY_ALGORITHMS, maxKeys: MAX_AGENT_KEYS, field: 'body.jwks' })
  } catch (error) {
    if (error instanceof JwksProblem) throw validationError(error.message, [{ field: error.field, message: error.message }])
    throw error
  }
}

const agentKeys: FastifyPluginAsyncTypebox = async function agentKeyRoutes (app) {
  async function lockedAgentToEmpower (db: Queryable, request: FastifyRequest, agentId: string): Promise<void> {
    const agent = await findAgent(db, agentId, { forUpdate: true })
    if (agent === null) throw agentNotFound(agentId)
    if (agent.status === 'decommissioned') throw conflict('AGENT_ALREADY_DECOMMISSIONED', `agent ${agentId} is decommissioned`)
    app.policy.authorizeTarget(request, agent)
  }

  app.put('/api/v1/agents/:agentId/jwks', {
    config: { policy: 'agents.keys.write' },
    bodyLimit: BODY_LIMIT,
    schema: {
      tags: ['agents'],
      operationId: 'putAgentKeys',
      summary: "Replace an agent's public keys (private_key_jwt, jwt-bearer)",
      params: AgentParams,
      body: ref(PutAgentKeys),
      response: {
        200: json(AgentKeys, 'The keys as registered'),
        ...managementErrors({ 404: ['AGENT_NOT_FOUND'], 409: ['AGENT_ALREADY_DECOMMISSIONED'] })
      }
    }
  }, async function putAgentKeys (request) {
    const { agentId } = request.params
    const keys = keysOf(request.body)
    const jwks = keys.length > 0 ? { keys: keys.map((key) => key.jwk) } : null
    const jwksUri = request.body.jwksUri ?? null
    const result = await inTransaction(app.pg.pool, async function replaceKeys (db) {
      await lockedAgentToEmpower(db, request, agentId)
      const change = await replaceAgentKeys(db, agentId, { jwks, jwksUri, thumbprints: keys.map((key) => key.thumbprint) })
      await app.audit.record(request, {
        action: 'agent.keys_updated',
        agentId,
        metadata: {
          thumbprints: keys.map((key) => key.thumbprint),
          kids: keys.flatMap((key) => key.kid === null ? [] : [key.kid]),
          jwksUri,
          addedCredentials: change.added,
          revokedCredentials: change.removed
        }
      }, db)
      return await findAgentKeys(db, agentId)
    })
    // a removed key's tokens and authentications stop on every instance now
    await app.clientDirectory.changed({ agentId })
    return { agentId, ...result as NonNullable<typeof result> }
  })

  app.get('/api/v1/agents/:agentId/jwks', {
    config: { policy: 'agents.keys.read' },
    schema: {
      tags: ['agents'],
      operationId: 'getAgentKeys',
      summary: "An agent's public keys",
      params: AgentParams,
      response: { 200: json(AgentKeys, "The agent's keys"), ...managementErrors({ 404: ['AGENT_NOT_FOUND'] }) }
    }
  }, async function getAgentKeys (request) {
    const keys = await findAgentKeys(app.pg, request.params.agentId)
    if (keys === null) throw agentNotFound(request.params.agentId)
    return { agentId: request.params.agentId, ...keys }
  })
}

export default agentKeys
