import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import {
  CreateFederationIssuer, FederationIssuer, FederationIssuerList, FederationIssuerParams, MAX_FEDERATION_ISSUERS, UpdateFederationIssuer
} from '../../schemas/federation.js'
import { NoContent, ref } from '../../schemas/common.js'
import { json, managementErrors } from '../../schemas/responses.js'
import {
  countFederationIssuers, deleteFederationIssuer, findFederationIssuerById, insertFederationIssuer, listFederationIssuers,
  lockFederationIssuers, updateFederationIssuer, type FederationIssuerChanges, type KeySource
} from '../../repositories/federation-issuers.js'
import { countActiveCredentials, revokeFederatedCredentials } from '../../repositories/credentials.js'
import { findAgent } from '../../repositories/agents.js'
import { inTransaction, type TransactionClient } from '../../repositories/transaction.js'
import type { AuditEntry } from '../../services/audit/record.js'
import { ADMIN_SCOPE, holdsAdminScope, isLastUsableAdmin } from '../../services/last-admin.js'
import { AccessDenied, conflict, federationIssuerNotFound, validationError, type FieldError } from '../../lib/errors.js'
import { JwksProblem, MAX_ISSUER_KEYS, readPublicJwks } from '../../lib/public-jwk.js'

/*
 * Trusted external issuers (API.md "Agents without secrets", Federation): CRUD with agents:write,
 * one audit event per change. What the schema can't say is checked here: exactly one key source,
 * an issuer URL that parses, discovery only for an https issuer, and inline keys that are public
 * and fit the issuer's algorithms. Deleting an issuer revokes every federated subject naming it,
 * in the same transaction: the tokens they obtained stop at once.
 */

const ISSUERS = '/api/v1/federation/issuers'

type SourceName = 'jwks' | 'jwksUri' | 'discovery'
type Jwks = { keys: object[] }

const invalid = (field: string, message: string) => validationError(`${field}: ${message}`, [{ field, message }])

/** The key source named in a body: `discovery: false` names none. */
function sourcesGiven (body: { jwks?: Jwks, jwksUri?: string, discovery?: boolean }): KeySource[] {
  return [
    ...(body.jwks === undefined ? [] : [{ jwks: body.jwks }]),
    ...(body.jwksUri === undefined ? [] : [{ jwksUri: body.jwksUri }]),
    ...(body.discovery === true ? [{ discovery: true as const }] : [])
  ]
}

function sourceName (source: KeySource): SourceName {
  return source.jwks !== undefined ? 'jwks' : source.jwksUri !== undefined ? 'jwksUri' : 'discovery'
}

function sourceOf (issuer: FederationIssuer): KeySource {
  if (issuer.jwks !== undefined) return { jwks: issuer.jwks }
  if (issuer.jwksUri !== undefined) return { jwksUri: issuer.jwksUri }
  return { discovery: true }
}

/** The schema's pattern admits the issuer's characters; the URL must also parse (a port in range, a well-formed IPv6 host). */
function assertIssuerParses (issuer: string): void {
  if (issuer.startsWith('spiffe://')) return
  const url = URL.parse(issuer)
  if (url === null || url.protocol !== 'https:' || url.hostname === '') throw invalid('body.issuer', 'must be an https URL')
}

function assertUriParses (uri: string, field: string): void {
  const url = URL.parse(uri)
  if (url === null || url.protocol !== 'https:' || url.hostname === '') throw invalid(field, 'must be an https URL')
}

/**
 * Checks a key source against the issuer and its algorithms. `field` names what the caller gave
 * that is at fault when stored keys no longer fit (a PATCH of `algorithms` alone).
 */
async function assertSourceFits (issuer: string, source: KeySource, algorithms: readonly string[], jwksField: string): Promise<void> {
  if (source.discovery === true && issuer.startsWith('spiffe://')) {
    throw invalid('body.discovery', 'OIDC discovery needs an https issuer; give a SPIFFE trust domain its keys as jwks or jwksUri')
  }
  if (source.jwksUri !== undefined) assertUriParses(source.jwksUri, 'body.jwksUri')
  if (source.jwks === undefined) return
  try {
    await readPublicJwks(source.jwks, { algorithms, maxKeys: MAX_ISSUER_KEYS, field: jwksField })
  } catch (error) {
    if (!(error instanceof JwksProblem)) throw error
    const errors: FieldError[] = [{ field: error.field, message: error.message }]
    throw validationError(`${error.field}: ${error.message}`, errors)
  }
}

const federation: FastifyPluginAsyncTypebox = async function federationRoutes (app) {
  app.post(ISSUERS, {
    config: { policy: 'federation.create' },
    schema: {
      tags: ['federation'],
      operationId: 'createFederationIssuer',
      summary: 'Trust an external issuer (GitHub Actions, a Kubernetes cluster, a SPIFFE trust domain, …)',
      body: ref(CreateFederationIssuer),
      response: {
        201: json(FederationIssuer, 'Trusted'),
        ...managementErrors({ 409: ['FEDERATION_ISSUER_ALREADY_EXISTS', 'CONFLICT'] })
      }
    }
  }, async function createFederationIssuer (request, reply) {
    const { issuer, audiences, algorithms, maxLifetimeSeconds = 3600 } = request.body
    assertIssuerParses(issuer)
    const sources = sourcesGiven(request.body)
    if (sources.length !== 1) {
      throw invalid('body', `give exactly one key source: jwks, jwksUri or discovery: true (${sources.length === 0 ? 'none' : sources.map(sourceName).join(' and ')} given)`)
    }
    const [source] = sources
    await assertSourceFits(issuer, source, algorithms, 'body.jwks')
    const created = await inTransaction(app.pg.pool, async function trustIssuer (db) {
      // one creation at a time: the count and the insert see the same set of issuers
      await lockFederationIssuers(db)
      if (await countFederationIssuers(db) >= MAX_FEDERATION_ISSUERS) {
        throw conflict('CONFLICT', `at most ${MAX_FEDERATION_ISSUERS} issuers can be trusted; delete one first`)
      }
      const inserted = await insertFederationIssuer(db, { ...source, issuer, audiences, algorithms, maxLifetimeSeconds })
      await app.audit.record(request, {
        action: 'federation.issuer_created',
        agentId: null,
        metadata: { issuerId: inserted.issuerId, issuer, keySource: sourceName(source), audiences, algorithms, maxLifetimeSeconds }
      }, db)
      return inserted
    })
    reply.code(201)
    return created
  })

  app.get(ISSUERS, {
    config: { policy: 'federation.list' },
    schema: {
      tags: ['federation'],
      operationId: 'listFederationIssuers',
      summary: `List the trusted issuers, ordered by issuer (all of them: at most ${MAX_FEDERATION_ISSUERS})`,
      response: { 200: json(FederationIssuerList, 'Every trusted issuer'), ...managementErrors() }
    }
  }, async function listFederationIssuersRoute () {
    return { data: await listFederationIssuers(app.pg, MAX_FEDERATION_ISSUERS) }
  })

  app.get(`${ISSUERS}/:issuerId`, {
    config: { policy: 'federation.read' },
    schema: {
      tags: ['federation'],
      operationId: 'getFederationIssuer',
      summary: 'Read one trusted issuer',
      params: FederationIssuerParams,
      response: { 200: json(FederationIssuer, 'The issuer'), ...managementErrors({ 404: ['FEDERATION_ISSUER_NOT_FOUND'] }) }
    }
  }, async function getFederationIssuer (request) {
    const issuer = await findFederationIssuerById(app.pg, request.params.issuerId)
    if (issuer === null) throw federationIssuerNotFound(request.params.issuerId)
    return issuer
  })

  /** What a PATCH changes, field by field, against the current issuer; throws a 400 for a change that can't be made. */
  async function changesOf (current: FederationIssuer, patch: UpdateFederationIssuer): Promise<{ changes: FederationIssuerChanges, changed: string[] }> {
    const sources = sourcesGiven(patch)
    if (sources.length > 1) throw invalid('body', `give at most one key source (${sources.map(sourceName).join(' and ')} given)`)
    if (patch.discovery === false && sources.length === 0 && current.discovery) {
      throw invalid('body.discovery', 'the issuer\'s keys come from discovery: give jwks or jwksUri to replace it')
    }
    const source = sources[0] ?? sourceOf(current)
    const algorithms = patch.algorithms ?? current.algorithms
    // stored keys are checked again against new algorithms: each must still fit one of them
    await assertSourceFits(current.issuer, source, algorithms, patch.jwks === undefined ? 'body.algorithms' : 'body.jwks')

    const changes: FederationIssuerChanges = {}
    const changed: string[] = []
    const differs = (before: unknown, after: unknown) => JSON.stringify(before) !== JSON.stringify(after)
    const before = sourceOf(current)
    if (differs(before, source)) {
      changes.source = source
      changed.push(...(['jwks', 'jwksUri', 'discovery'] as const).filter((name) => differs(before[name], source[name])))
    }
    if (patch.audiences !== undefined && differs(current.audiences, patch.audiences)) { changes.audiences = patch.audiences; changed.push('audiences') }
    if (patch.algorithms !== undefined && differs(current.algorithms, patch.algorithms)) { changes.algorithms = patch.algorithms; changed.push('algorithms') }
    if (patch.maxLifetimeSeconds !== undefined && patch.maxLifetimeSeconds !== current.maxLifetimeSeconds) {
      changes.maxLifetimeSeconds = patch.maxLifetimeSeconds
      changed.push('maxLifetimeSeconds')
    }
    return { changes, changed }
  }

  app.patch(`${ISSUERS}/:issuerId`, {
    config: { policy: 'federation.update' },
    schema: {
      tags: ['federation'],
      operationId: 'updateFederationIssuer',
      summary: 'Change a trusted issuer\'s keys, audiences, algorithms or maximum assertion lifetime',
      params: FederationIssuerParams,
      body: ref(UpdateFederationIssuer),
      response: { 200: json(FederationIssuer, 'The issuer as changed'), ...managementErrors({ 404: ['FEDERATION_ISSUER_NOT_FOUND'] }) }
    }
  }, async function updateFederationIssuerRoute (request) {
    const { issuerId } = request.params
    return await inTransaction(app.pg.pool, async function changeIssuer (db) {
      const current = await findFederationIssuerById(db, issuerId, { forUpdate: true })
      if (current === null) throw federationIssuerNotFound(issuerId)
      const { changes, changed } = await changesOf(current, request.body)
      // nothing differs: no change, no event
      if (changed.length === 0) return current
      const updated = await updateFederationIssuer(db, issuerId, changes) as FederationIssuer
      await app.audit.record(request, { action: 'federation.issuer_updated', agentId: null, metadata: { issuerId, issuer: current.issuer, changed } }, db)
      return updated
    })
  })

  /**
   * The last-admin rule (services/last-admin.ts): revoking federated subjects must not leave
   * nobody able to administer. Asked after the revocation, inside its transaction, for each
   * affected admin that has no usable credential left.
   */
  async function assertAdminsRemain (db: TransactionClient, issuerId: string, agentIds: readonly string[]): Promise<void> {
    for (const agentId of agentIds) {
      const agent = await findAgent(db, agentId)
      if (agent === null || !holdsAdminScope(agent) || await countActiveCredentials(db, agentId) > 0) continue
      if (!await isLastUsableAdmin(db, agentId)) continue
      throw new AccessDenied(conflict('CONFLICT', `deleting federation issuer ${issuerId} would revoke the last usable credential of the last agent able to use ${ADMIN_SCOPE}; give another agent ${ADMIN_SCOPE} and a credential first`),
        { agentId, reason: 'last_admin', details: { issuerId } })
    }
  }

  app.delete(`${ISSUERS}/:issuerId`, {
    config: { policy: 'federation.delete' },
    schema: {
      tags: ['federation'],
      operationId: 'deleteFederationIssuer',
      summary: 'Stop trusting an issuer: revokes every federated subject naming it, and the tokens they obtained',
      params: FederationIssuerParams,
      response: {
        204: NoContent,
        ...managementErrors({ 404: ['FEDERATION_ISSUER_NOT_FOUND'], 409: ['CONFLICT'] })
      }
    }
  }, async function deleteFederationIssuerRoute (request, reply) {
    const { issuerId } = request.params
    const affected = await inTransaction(app.pg.pool, async function distrustIssuer (db) {
      const current = await findFederationIssuerById(db, issuerId, { forUpdate: true })
      if (current === null) throw federationIssuerNotFound(issuerId)
      const revoked = await revokeFederatedCredentials(db, current.issuer)
      const agentIds = [...new Set(revoked.map((row) => row.clientId))]
      await assertAdminsRemain(db, issuerId, agentIds)
      await deleteFederationIssuer(db, issuerId)
      const events: AuditEntry[] = [
        { action: 'federation.issuer_deleted', agentId: null, metadata: { issuerId, issuer: current.issuer, revokedSubjects: revoked.length } },
        // as decommissioning does: each revoked credential is in its agent's own trail
        ...revoked.map(({ credentialId, clientId }): AuditEntry => ({
          action: 'credential.revoked', agentId: clientId, metadata: { credentialId, reason: 'federation_issuer_deleted', issuerId }
        }))
      ]
      await app.audit.recordMany(request, events, db)
      return agentIds
    })
    // the token endpoint must forget those credentials now, on every instance
    for (const agentId of affected) await app.clientDirectory.changed({ agentId })
    reply.code(204)
    return null
  })
}

export default federation
