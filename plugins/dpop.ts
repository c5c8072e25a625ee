import { createHash } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { recordUsedAssertion } from '../repositories/used-assertions.js'
import {
  createNonceSource, DpopProofError, PROOF_CLOCK_SKEW_SECONDS, PROOF_MAX_AGE_SECONDS, verifyDpopProof, type NonceSource, type VerifiedProof
} from '../services/dpop.js'
import { DependencyUnavailableError, OAuthError } from '../lib/errors.js'

/**
 * DPoP (RFC 9449) for this server: the proofs of token requests (which bind the token to the
 * proof's key) and of resource requests (which show the bound token's key), checked by
 * services/dpop.ts against URLs built from ISSUER_URL — never the Host header. A proof's jti is
 * claimed once on every instance (Redis SET NX, kept for the proof's acceptance window); when Redis
 * can't answer, PostgreSQL's used_assertions table decides; when neither can, 503. With
 * DPOP_NONCE_REQUIRED the token endpoint asks for a server nonce (§8): stateless, valid on every
 * instance (services/dpop.ts), handed out in `DPoP-Nonce`.
 */

export interface Dpop {
  readonly nonceRequired: boolean
  readonly nonces: NonceSource
  /** The proof of a token request, or null when it has none; an OAuthError (400) when it does not check out. */
  tokenRequestProof (request: FastifyRequest): Promise<VerifiedProof | null>
  /** The proof of a resource request presenting `token`; a DpopProofError when it does not check out. */
  resourceProof (request: FastifyRequest, token: string): Promise<VerifiedProof>
}

declare module 'fastify' {
  interface FastifyInstance { dpop: Dpop }
}

const CLAIM_TTL_MS = (PROOF_MAX_AGE_SECONDS + 2 * PROOF_CLOCK_SKEW_SECONDS) * 1000

/** The request's one DPoP header; more than one is a malformed proof (§4.3 step 1). */
function proofHeader (request: FastifyRequest): string | null {
  const value = request.headers.dpop
  if (value === undefined) return null
  if (Array.isArray(value) || value.includes(',')) throw new DpopProofError('several_proofs')
  return value
}

export default fp(async function dpopPlugin (app: FastifyInstance) {
  const base = app.config.ISSUER_URL.replace(/\/+$/, '')
  const tokenEndpoint = `${base}/api/v1/token`
  const nonceRequired = app.config.DPOP_NONCE_REQUIRED
  // every instance derives the same nonce key from the signing key they share
  const nonces = createNonceSource(app.config.JWT_PRIVATE_KEY)

  /** Claims the proof's jti once across instances: Redis first, PostgreSQL when Redis can't answer. */
  async function useOnce (proof: VerifiedProof): Promise<void> {
    const key = createHash('sha256').update(`dpop\n${proof.jkt}\n${proof.jti}`).digest('base64url')
    let fresh: boolean
    try {
      fresh = await app.cache.claimOnce(`dpop:${key}`, CLAIM_TTL_MS)
    } catch (error) {
      if (!(error instanceof DependencyUnavailableError)) throw error
      fresh = await recordUsedAssertion(app.pg, `dpop:${key}`, Math.ceil(Date.now() / 1000 + CLAIM_TTL_MS / 1000))
    }
    if (!fresh) throw new DpopProofError('jti_replayed')
  }

  async function tokenRequestProof (request: FastifyRequest): Promise<VerifiedProof | null> {
    const nonceHeader: Record<string, string> = nonceRequired ? { 'dpop-nonce': nonces.current() } : {}
    try {
      const proof = proofHeader(request)
      if (proof === null) return null
      const verified = await verifyDpopProof(proof, { method: request.method, url: tokenEndpoint, nonce: { source: nonces, required: nonceRequired } })
      await useOnce(verified)
      return verified
    } catch (error) {
      if (!(error instanceof DpopProofError)) throw error
      await app.audit.authFailed(request, { claimedAgentId: null, reason: `dpop_${error.reason}`, method: 'client_credentials' })
      throw error.useNonce
        ? new OAuthError(400, 'use_dpop_nonce', 'the DPoP proof must carry the nonce in the DPoP-Nonce header', nonceHeader)
        : new OAuthError(400, 'invalid_dpop_proof', 'the DPoP proof is not valid', nonceHeader)
    }
  }

  async function resourceProof (request: FastifyRequest, token: string): Promise<VerifiedProof> {
    const proof = proofHeader(request)
    if (proof === null) throw new DpopProofError('proof_missing')
    // the URL as this server's public address names it: the path the client asked for, no query
    const url = `${base}${request.url.split('?')[0]}`
    const verified = await verifyDpopProof(proof, { method: request.method, url, accessToken: token })
    await useOnce(verified)
    return verified
  }

  app.decorate('dpop', { nonceRequired, nonces, tokenRequestProof, resourceProof })
}, { name: 'dpop', dependencies: ['config', 'db', 'cache', 'audit'], fastify: '5.x' })
