import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { AgentParams } from '../../schemas/agents.js'
import { ManagementErrors, NoContent, Problem } from '../../schemas/common.js'
import { CreateCredential, CredentialList, CredentialParams, IssuedCredential, RotateCredential } from '../../schemas/credentials.js'
import type { Agent } from '../../schemas/agents.js'
import type { Credential } from '../../schemas/credentials.js'
import { findAgent } from '../../repositories/agents.js'
import {
  countActiveCredentials, findCredential, insertCredential, listCredentials, replaceSecret, revokeCredential, type SecretPlace
} from '../../repositories/credentials.js'
import { inTransaction, type Queryable } from '../../repositories/transaction.js'
import { hashSecret, generateSecret, newSecret } from '../../services/secrets.js'
import { holdsAdminScope, isLastUsableAdmin } from '../../services/last-admin.js'
import { AccessDenied, agentNotFound, conflict, notFound, validationError } from '../../lib/errors.js'
import { afterFailedGenerate, afterRevocation, afterRotation, placeNewSecret, placeRotatedSecret } from '../../plugins/vault.js'
import { canonicalInstant } from '../../lib/instant.js'

/** An agent holds at most this many usable (active, unexpired) credentials. */
export const MAX_ACTIVE_CREDENTIALS = 5

/**
 * Client secrets of an agent: generate, list, rotate, revoke. A secret is returned once, by the
 * call that creates or rotates it, with Cache-Control: no-store; only its argon2id hash is kept.
 * Rotation stops the old secret at once but leaves tokens already issued valid; revocation stops
 * the credential and every token it obtained, on every instance, from the next request on.
 *
 * Generating or rotating a secret hands out the agent's power, so the policy decides it a second
 * time on the agent's locked row (`app.policy.authorizeTarget`): the capabilities checked are the
 * ones the secret will carry, whatever a concurrent PATCH does. Refusals thrown as AccessDenied are
 * audited by the policy plugin after the transaction rolled back.
 *
 * The answer to generate and rotate is the only copy of the new secret: a COMMIT whose answer is
 * lost is settled before answering (`settleCommit`, repositories/transaction.ts), so a 503 means
 * the change did not happen (the old secret still works) and a change that committed is answered
 * with its secret. Found by test/resilience/faults-midflight.test.ts: a rotation whose backend
 * stalled before COMMIT was answered 503, then committed, and left its client with no working secret.
 */
const credentials: FastifyPluginAsyncTypebox = async function credentialRoutes (app) {
  /** The agent the path names, locked for the rest of the transaction; 404 / 409 when unusable. */
  async function lockedAgent (db: Queryable, agentId: string): Promise<Agent> {
    const agent = await findAgent(db, agentId, { forUpdate: true })
    if (agent === null) throw agentNotFound(agentId)
    if (agent.status === 'decommissioned') throw conflict('AGENT_ALREADY_DECOMMISSIONED', `agent ${agentId} is decommissioned`)
    return agent
  }

  /** The agent a new secret will belong to: locked, then authorized on the capabilities it holds now. */
  async function agentToEmpower (db: Queryable, request: FastifyRequest, agentId: string): Promise<Agent> {
    const agent = await lockedAgent(db, agentId)
    app.policy.authorizeTarget(request, agent)
    return agent
  }

  async function existingCredential (db: Queryable, agentId: string, credentialId: string): Promise<Credential> {
    const credential = await findCredential(db, agentId, credentialId, { forUpdate: true })
    if (credential === null) throw notFound('CREDENTIAL_NOT_FOUND', `credential ${credentialId} not found`)
    if (credential.status === 'revoked') throw conflict('CREDENTIAL_ALREADY_REVOKED', `credential ${credentialId} is revoked`)
    return credential
  }

  /**
   * These routes take an optional body: none at all is the same as {} (and still refuses unknown
   * fields). A JSON `null` is a body, and not an object: refused like any other (it was taken for
   * none, found by test/resilience/fuzz.test.ts).
   */
  async function defaultEmptyBody (request: FastifyRequest): Promise<void> {
    if (request.body === undefined) request.body = {}
  }

  function noStore (reply: FastifyReply): void {
    reply.header('cache-control', 'no-store').header('pragma', 'no-cache')
  }

  app.post('/api/v1/agents/:agentId/credentials', {
    config: { policy: 'credentials.create' },
    preValidation: defaultEmptyBody,
    schema: {
      tags: ['credentials'],
      operationId: 'createCredential',
      summary: 'Generate a client secret (shown once)',
      security: [{ bearerAuth: [] }],
      params: AgentParams,
      body: CreateCredential,
      response: { 201: IssuedCredential, ...ManagementErrors, 409: Problem }
    }
  }, async function createCredential (request, reply) {
    const { agentId } = request.params
    const expiresAt = request.body.expiresAt === undefined ? undefined : canonicalInstant(request.body.expiresAt, 'body.expiresAt')
    if (expiresAt !== undefined && Date.parse(expiresAt) <= Date.now()) {
      throw validationError('expiresAt must be in the future', [{ field: 'body.expiresAt', message: 'must be in the future' }])
    }
    const { credentialId, secret, secretHash } = await newSecret()
    let secretPlaced = false
    const credential = await inTransaction(app.pg.pool, async function generate (db) {
      await agentToEmpower(db, request, agentId)
      if (await countActiveCredentials(db, agentId) >= MAX_ACTIVE_CREDENTIALS) {
        throw new AccessDenied(conflict('CONFLICT', `agent ${agentId} already has ${MAX_ACTIVE_CREDENTIALS} active credentials; revoke one first`),
          { agentId, reason: 'credential_limit' })
      }
      // with Vault: the secret is written before the row that names it (services/vault-secrets.ts)
      secretPlaced = true
      const place = await placeNewSecret(app, agentId, credentialId, secretHash)
      const created = await insertCredential(db, { credentialId, clientId: agentId, expiresAt: expiresAt ?? null, ...place })
      await app.audit.record(request, {
        action: 'credential.generated', agentId, metadata: { credentialId, expiresAt: created.expiresAt }
      }, db)
      return created
    }, { settleCommit: true }).catch(async (error: unknown) => {
      // no usable secret without its row: a secret placed before a failed insert or commit goes again
      if (secretPlaced) await afterFailedGenerate(app, agentId, credentialId)
      throw error
    })
    noStore(reply)
    reply.code(201)
    return { ...credential, clientSecret: secret }
  })

  app.get('/api/v1/agents/:agentId/credentials', {
    config: { policy: 'credentials.list' },
    schema: {
      tags: ['credentials'],
      operationId: 'listCredentials',
      summary: "List an agent's credentials (never their secrets)",
      security: [{ bearerAuth: [] }],
      params: AgentParams,
      response: { 200: CredentialList, ...ManagementErrors }
    }
  }, async function listCredentialsRoute (request) {
    const { agentId } = request.params
    if (await findAgent(app.pg, agentId) === null) throw agentNotFound(agentId)
    return { data: await listCredentials(app.pg, agentId) }
  })

  app.post('/api/v1/agents/:agentId/credentials/:credentialId/rotate', {
    config: { policy: 'credentials.rotate' },
    preValidation: defaultEmptyBody,
    schema: {
      tags: ['credentials'],
      operationId: 'rotateCredential',
      summary: 'Replace the secret of a credential (same id, same expiry); tokens already issued stay valid',
      security: [{ bearerAuth: [] }],
      params: CredentialParams,
      body: RotateCredential,
      response: { 200: IssuedCredential, ...ManagementErrors, 409: Problem }
    }
  }, async function rotateCredential (request, reply) {
    const { agentId, credentialId } = request.params
    const secret = generateSecret(credentialId)
    const secretHash = await hashSecret(secret)
    let place: SecretPlace = { secretHash }
    const credential = await inTransaction(app.pg.pool, async function rotate (db) {
      await agentToEmpower(db, request, agentId)
      const current = await existingCredential(db, agentId, credentialId)
      if (current.status === 'expired') throw conflict('CONFLICT', `credential ${credentialId} has expired; generate a new one`)
      place = await placeRotatedSecret(app, db, agentId, credentialId, secretHash)
      const rotated = await replaceSecret(db, credentialId, place)
      await app.audit.record(request, { action: 'credential.rotated', agentId, metadata: { credentialId } }, db)
      return rotated
    }, { settleCommit: true })
    await app.clientDirectory.changed({ credentialId })
    await afterRotation(app, place)
    noStore(reply)
    return { ...credential, clientSecret: secret }
  })

  app.delete('/api/v1/agents/:agentId/credentials/:credentialId', {
    config: { policy: 'credentials.revoke' },
    schema: {
      tags: ['credentials'],
      operationId: 'revokeCredential',
      summary: 'Revoke a credential: its secret and every token it obtained stop working at once',
      security: [{ bearerAuth: [] }],
      params: CredentialParams,
      response: { 204: NoContent, ...ManagementErrors, 409: Problem }
    }
  }, async function revokeCredentialRoute (request, reply) {
    const { agentId, credentialId } = request.params
    await inTransaction(app.pg.pool, async function revoke (db) {
      const agent = await findAgent(db, agentId, { forUpdate: true })
      if (agent === null) throw agentNotFound(agentId)
      const credential = await existingCredential(db, agentId, credentialId)
      // the last usable admin's last usable credential: revoking it would leave nobody able to
      // administer, exactly as suspending that agent would (services/last-admin.ts)
      if (credential.status === 'active' && holdsAdminScope(agent) && await countActiveCredentials(db, agentId) === 1 &&
        await isLastUsableAdmin(db, agentId)) {
        throw new AccessDenied(conflict('CONFLICT', `credential ${credentialId} is the last usable credential of the last agent able to administer agents; give another agent agents:write and a credential first`),
          { agentId, reason: 'last_admin', details: { credentialId } })
      }
      await revokeCredential(db, credentialId)
      await app.audit.record(request, { action: 'credential.revoked', agentId, metadata: { credentialId } }, db)
    })
    await app.clientDirectory.changed({ credentialId })
    // after the commit: revocation never waits for Vault (reconciliation erases what this can't)
    await afterRevocation(app, agentId, credentialId)
    reply.code(204)
    return null
  })
}

export default credentials
