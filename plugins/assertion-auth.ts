import { createHash } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { JWTPayload } from 'jose'
import { findFederatedMatches, type KeyClientRecord } from '../repositories/agent-keys.js'
import { findFederationIssuer } from '../repositories/federation-issuers.js'
import type { FederationIssuer } from '../schemas/federation.js'
import { recordUsedAssertion } from '../repositories/used-assertions.js'
import {
  AssertionFailure, AssertionRefused, conditionsHold, MAX_OWN_ASSERTION_SECONDS, readAssertion, verifyAssertion, CLOCK_SKEW_SECONDS,
  type ReadAssertion, type VerifyRules
} from '../services/assertions.js'
import { AGENT_KEY_ALGORITHMS, FEDERATION_ALGORITHMS, JwksProblem, MAX_AGENT_KEYS, MAX_ISSUER_KEYS, readPublicJwks, type PublicKey } from '../lib/public-jwk.js'
import { DependencyUnavailableError } from '../lib/errors.js'
import { isUuid } from '../lib/uuid.js'
import type { AuthenticatedClient } from './client-auth.js'

/**
 * Authentication by JWT assertion (RFC 7523): `client_assertion` (private_key_jwt) and the
 * jwt-bearer grant's `assertion`. An assertion is either the agent's own — `iss` = `sub` = its
 * agentId, signed by a key it registered (inline JWKS or jwks_uri), `aud` this issuer or its token
 * endpoint, `exp` at most 300 s ahead, a `jti` used once on any instance — or a federated issuer's
 * token (a Kubernetes service-account token, a SPIFFE JWT-SVID, a GitHub Actions OIDC token) whose
 * `iss` and `sub` an agent lists among its federated subjects, checked against that issuer's keys,
 * algorithms, audiences and maximum lifetime, and the subject's claim conditions.
 *
 * A jti is claimed in Redis (one SET NX, shared by every instance) and recorded durably in
 * PostgreSQL (`used_assertions`): with the token's issuance write for the token endpoint, at once
 * for the other callers. When Redis can't answer, the PostgreSQL record alone decides; when
 * neither can, the request fails with 503: a replay is never let through for want of a check.
 *
 * A third kind, for agents outside the registry: `iss` = `sub` = an https URL naming the client's
 * metadata document (plugins/client-metadata.ts), signed by a key of that document, for a host the
 * policy grants scopes to; the client is then its shadow agent (created or brought up to date here),
 * whose agentId the token names. Only as client_assertion (private_key_jwt), never as a grant.
 *
 * Federated tokens are not single-use: platforms hand the same token to a workload for its whole
 * lifetime (a Kubernetes projected token is reread from its file until the kubelet rotates it), so
 * their exposure is bounded by the issuer's maxLifetimeSeconds and audiences instead.
 */

export interface AssertionOptions {
  /** the client_id the request names, if any: the assertion must map to that agent */
  clientId?: string
  /** record the jti in PostgreSQL now (introspection, revocation); the token endpoint records it with the issuance */
  recordNow: boolean
  method: 'private_key_jwt' | 'jwt_bearer'
  /** the request, for the audit events of a metadata-document client's agent (created, keys synced) */
  request?: FastifyRequest
}

export interface AssertionAuthenticator {
  authenticate (assertion: string, options: AssertionOptions): Promise<AuthenticatedClient>
}

declare module 'fastify' {
  interface FastifyInstance { assertionAuth: AssertionAuthenticator }
}

const MAX_PARSED_JWKS = 1000

export default fp(async function assertionAuthPlugin (app: FastifyInstance) {
  const issuer = app.config.ISSUER_URL
  const audiences = [issuer, `${issuer.replace(/\/+$/, '')}/api/v1/token`]
  // inline JWK Sets read once per distinct content (an agent's or an issuer's), not per request
  const parsed = new Map<string, PublicKey[]>()

  function inlineKeys (jwks: unknown, algorithms: readonly string[], maxKeys: number): PublicKey[] {
    const text = `${algorithms.join(',')}|${JSON.stringify(jwks)}`
    let keys = parsed.get(text)
    if (keys === undefined) {
      try {
        keys = readPublicJwks(jwks, { algorithms, maxKeys, field: 'jwks' })
      } catch (error) {
        // registered keys are checked when written: one that no longer reads is refused, never a 500
        if (error instanceof JwksProblem) throw new AssertionRefused('keys_unavailable')
        throw error
      }
      if (parsed.size >= MAX_PARSED_JWKS) parsed.delete(parsed.keys().next().value as string)
      parsed.set(text, keys)
    }
    return keys
  }

  /** Verifies against keys that may be refetched once when the signing kid is unknown (a rotation). */
  async function verifyWithRefresh (assertion: string, read: ReadAssertion, rules: VerifyRules, keysOf: (refresh: boolean) => Promise<PublicKey[]>): Promise<{ claims: JWTPayload, key: PublicKey }> {
    const now = Math.floor(Date.now() / 1000)
    try {
      return await verifyAssertion(assertion, read, await keysOf(false), rules, now)
    } catch (error) {
      if (!(error instanceof AssertionRefused) || error.reason !== 'unknown_key') throw error
      return await verifyAssertion(assertion, read, await keysOf(true), rules, now)
    }
  }

  async function remote<T> (fetching: () => Promise<T>): Promise<T> {
    try {
      return await fetching()
    } catch (error) {
      if (error instanceof AssertionRefused) throw error
      app.log.warn({ err: { message: (error as Error).message, reason: (error as { reason?: string }).reason } }, 'could not fetch the keys an assertion names')
      throw new AssertionRefused('keys_unavailable')
    }
  }

  function agentKeysOf (record: KeyClientRecord): (refresh: boolean) => Promise<PublicKey[]> {
    if (record.jwksUri !== null) return async (refresh) => await remote(() => app.remoteKeys.agentKeys(record.jwksUri as string, { refresh }))
    const keys = record.jwks === null ? [] : inlineKeys(record.jwks, AGENT_KEY_ALGORITHMS, MAX_AGENT_KEYS)
    return async () => keys
  }

  function issuerKeysOf (trusted: FederationIssuer): (refresh: boolean) => Promise<PublicKey[]> {
    const allowed = (keys: PublicKey[]) => keys.map((key) => ({ ...key, algorithms: key.algorithms.filter((alg) => trusted.algorithms.includes(alg)) }))
    if (trusted.jwks !== undefined) {
      const keys = allowed(inlineKeys(trusted.jwks, FEDERATION_ALGORITHMS, MAX_ISSUER_KEYS))
      return async () => keys
    }
    return async (refresh) => await remote(async () => {
      const uri = trusted.jwksUri ?? await app.remoteKeys.discoveredJwksUri(trusted.issuer)
      return allowed(await app.remoteKeys.issuerKeys(uri, { refresh }))
    })
  }

  /** The agent's own assertion: iss = sub = its agentId, signed by one of its keys. */
  async function ownAssertion (assertion: string, read: ReadAssertion, options: AssertionOptions): Promise<{ record: KeyClientRecord, credentialId: string, claims: JWTPayload }> {
    const agentId = String(read.claims.iss).toLowerCase()
    if (options.clientId !== undefined && options.clientId.toLowerCase() !== agentId) throw new AssertionFailure('client_id_mismatch', agentId)
    const record = await app.clientDirectory.findKeyClient(agentId)
    const rules: VerifyRules = { algorithms: AGENT_KEY_ALGORITHMS, audiences, issuer: String(read.claims.iss), subject: String(read.claims.iss), maxSecondsAhead: MAX_OWN_ASSERTION_SECONDS, requireJti: true }
    if (record === null) {
      await verifyAssertion(assertion, read, [], rules, Math.floor(Date.now() / 1000)).catch(() => {})
      throw new AssertionFailure('unknown_client', null)
    }
    const { claims, key } = await verifyWithRefresh(assertion, read, rules, agentKeysOf(record)).catch((error: unknown) => {
      throw error instanceof AssertionRefused ? new AssertionFailure(error.reason, record.agentId) : error
    })
    const credentialId = record.jwksUri !== null ? record.jwksUriCredential : record.keyCredentials.get(key.thumbprint)
    // a key in the set without an active row was removed (and its row revoked) since the set was read
    if (credentialId === undefined || credentialId === null) throw new AssertionRefused('key_removed')
    return { record, credentialId, claims }
  }

  /** A federated issuer's token, mapped to the one agent that lists its (iss, sub) with conditions that hold. */
  async function federatedAssertion (assertion: string, read: ReadAssertion, trusted: FederationIssuer, options: AssertionOptions): Promise<{ record: KeyClientRecord, credentialId: string, claims: JWTPayload }> {
    const rules: VerifyRules = {
      algorithms: trusted.algorithms,
      audiences: trusted.audiences,
      issuer: trusted.issuer,
      maxSecondsAhead: trusted.maxLifetimeSeconds,
      maxLifetimeSeconds: trusted.maxLifetimeSeconds,
      requireJti: false
    }
    const { claims } = await verifyWithRefresh(assertion, read, rules, issuerKeysOf(trusted))
    const listed = await findFederatedMatches(app.pg, trusted.issuer, String(claims.sub ?? ''))
    const named = options.clientId === undefined ? listed : listed.filter((match) => match.agentId === options.clientId?.toLowerCase())
    const holding = named.filter((match) => conditionsHold(match.conditions, claims))
    const claimed = named[0]?.agentId ?? (isUuid(options.clientId) ? options.clientId.toLowerCase() : null)
    if (named.length === 0) throw new AssertionFailure('federated_subject_not_listed', claimed)
    if (holding.length === 0) throw new AssertionFailure('federated_condition_unmet', claimed)
    if (holding.length > 1) throw new AssertionFailure('federated_subject_ambiguous', null)
    const record = await app.clientDirectory.findKeyClient(holding[0].agentId)
    if (record === null) throw new AssertionFailure('unknown_client', null)
    return { record, credentialId: holding[0].credentialId, claims }
  }

  /**
   * A client identified by its metadata document: the host's grant first (none: refused before any
   * fetch), then the document and its keys, then the shadow agent, created or synced.
   */
  async function metadataClient (assertion: string, read: ReadAssertion, options: AssertionOptions): Promise<{ record: KeyClientRecord, credentialId: string, claims: JWTPayload }> {
    const url = String(read.claims.iss)
    if (options.method !== 'private_key_jwt') throw new AssertionRefused('client_metadata_client_assertion_only')
    if (options.clientId !== undefined && options.clientId !== url) throw new AssertionFailure('client_id_mismatch', null)
    const host = app.clientMetadata.hostOf(url)
    const capabilities = app.policy.scopesForClientHost(host)
    if (capabilities.length === 0) throw new AssertionFailure('client_metadata_host_not_granted', null, true)
    let document = await app.clientMetadata.document(url)
    const rules: VerifyRules = { algorithms: AGENT_KEY_ALGORITHMS, audiences, issuer: url, subject: url, maxSecondsAhead: MAX_OWN_ASSERTION_SECONDS, requireJti: true }
    const { claims, key } = await verifyWithRefresh(assertion, read, rules, async (refresh) => {
      // an unknown kid: the document anew (it may name new keys), and its jwks_uri's keys anew
      if (refresh) document = await app.clientMetadata.document(url, { refresh: true })
      const current = document
      if (current.keys !== null) return current.keys
      return await remote(() => app.remoteKeys.agentKeys(current.jwksUri as string, { refresh }))
    })
    const record = await app.clientMetadata.agentFor(options.request, document, capabilities)
    // a key of the document without an active row: a newer copy of the document, read by another instance, removed it
    const credentialId = record.jwksUri !== null ? record.jwksUriCredential : record.keyCredentials.get(key.thumbprint)
    if (record.agentStatus === 'active' && (credentialId === undefined || credentialId === null)) throw new AssertionFailure('key_removed', record.agentId)
    return { record, credentialId: credentialId ?? '', claims }
  }

  /** Claims the jti once across instances (Redis), and durably (PostgreSQL) now or with the issuance. */
  async function useOnce (claims: JWTPayload, recordNow: boolean): Promise<AuthenticatedClient['assertion']> {
    const key = createHash('sha256').update(`${String(claims.iss)}\n${String(claims.jti)}`).digest('base64url')
    const expiresAt = (claims.exp as number) + CLOCK_SKEW_SECONDS
    const ttlMs = Math.max(1000, expiresAt * 1000 - Date.now())
    let claimedInRedis: boolean | null
    try {
      claimedInRedis = await app.cache.claimOnce(`assertion:${key}`, ttlMs)
    } catch (error) {
      if (!(error instanceof DependencyUnavailableError)) throw error
      claimedInRedis = null
    }
    if (claimedInRedis === false) throw new AssertionRefused('assertion_replayed')
    // without Redis, PostgreSQL decides now (a failure there is a 503: fail closed)
    if (recordNow || claimedInRedis === null) {
      if (!await recordUsedAssertion(app.pg, key, expiresAt)) throw new AssertionRefused('assertion_replayed')
      return undefined
    }
    return { key, expiresAt }
  }

  async function resolve (assertion: string, options: AssertionOptions): Promise<AuthenticatedClient> {
    const read = readAssertion(assertion)
    const iss = typeof read.claims.iss === 'string' ? read.claims.iss : ''
    const own = isUuid(iss) && read.claims.sub === iss
    // iss = sub spelled as a URL: a client identified by its metadata document
    const metadata = !own && read.claims.sub === iss && app.clientMetadata.names(iss)
    const trusted = own || metadata ? null : await findFederationIssuer(app.pg, iss)
    if (!own && !metadata && trusted === null) {
      // the same signature work as a refusal for a wrong key: the answer's timing says nothing of who is trusted
      await verifyAssertion(assertion, read, [], { algorithms: FEDERATION_ALGORITHMS, audiences, maxSecondsAhead: 0, requireJti: false }, 0).catch(() => {})
      throw new AssertionFailure('untrusted_issuer', isUuid(options.clientId) ? options.clientId.toLowerCase() : null)
    }
    const { record, credentialId, claims } = metadata
      ? await metadataClient(assertion, read, options)
      : trusted === null
        ? await ownAssertion(assertion, read, options)
        : await federatedAssertion(assertion, read, trusted, options)
    try {
      if (record.agentStatus === 'decommissioned') throw new AssertionRefused('agent_decommissioned')
      if (!record.authMethods.includes('private_key_jwt')) throw new AssertionRefused('auth_method_not_allowed')
      if (record.agentStatus === 'suspended') throw new AssertionFailure('agent_suspended', record.agentId, true)
      const used = trusted === null ? await useOnce(claims, options.recordNow) : undefined
      // the kind of the row that authenticated (a metadata document's keys are rows of kind key or jwks_uri)
      const kind = trusted === null ? (record.jwksUri === null ? 'key' : 'jwks_uri') : 'federated'
      return {
        agentId: record.agentId,
        credentialId,
        capabilities: record.capabilities,
        audiences: record.audiences,
        validAfterMs: record.validAfterMs,
        secretHash: `credential:${kind}`,
        method: options.method,
        dpopBound: record.dpopBound,
        ...(used === undefined ? {} : { assertion: used })
      }
    } catch (error) {
      if (error instanceof AssertionRefused) throw new AssertionFailure(error.reason, record.agentId)
      throw error
    }
  }

  app.decorate('assertionAuth', {
    async authenticate (assertion, options) {
      try {
        return await resolve(assertion, options)
      } catch (error) {
        if (error instanceof AssertionRefused) throw new AssertionFailure(error.reason, null)
        throw error
      }
    }
  } satisfies AssertionAuthenticator)
}, { name: 'assertion-auth', dependencies: ['config', 'db', 'cache', 'client-directory', 'remote-keys', 'client-metadata', 'policy'], fastify: '5.x' })
