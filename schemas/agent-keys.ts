import { Type, type Static } from 'typebox'
import { EXAMPLE, Timestamp, Uuid } from './common.js'

/**
 * An agent's public keys (API.md "Agents without secrets"): an inline JWK Set or a jwks_uri, never
 * both. Each key is checked beyond this shape by lib/public-jwk.ts (type, size, algorithm, no
 * private members, unique kids).
 */
const EXAMPLE_JWK = {
  kty: 'EC',
  crv: 'P-256',
  x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU',
  y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0',
  kid: 'invoice-screener-2026-11',
  alg: 'ES256',
  use: 'sig'
}

export const PublicJwks = Type.Object({
  keys: Type.Array(Type.Object({
    kty: Type.String({ maxLength: 8 }),
    kid: Type.Optional(Type.String({ minLength: 1, maxLength: 256 }))
  }, { additionalProperties: Type.Unknown(), maxProperties: 24 }), { maxItems: 10, description: 'at most 10 public keys: RS256 (RSA ≥ 2048 bits), ES256 (P-256), EdDSA (Ed25519); an empty array removes them all' })
}, { additionalProperties: false, description: 'a JWK Set (RFC 7517 §5) of public keys only' })

const HttpsUri = Type.String({ maxLength: 2048, pattern: '^https://[^\\s]+$', description: 'https only; fetched with a timeout and size limit, cached within bounds (honouring Cache-Control)' })

// one object with exactly one member rather than a union of two: one shape for clients to fill
export const PutAgentKeys = Type.Object({
  jwks: Type.Optional(PublicJwks),
  jwksUri: Type.Optional(HttpsUri)
}, {
  additionalProperties: false,
  minProperties: 1,
  maxProperties: 1,
  $id: 'PutAgentKeys',
  title: 'PutAgentKeys',
  description: 'Replaces the agent\'s keys with a JWK Set or a jwks_uri (exactly one of them): a key left out is removed, and every token it authenticated stops working at once',
  examples: [{ jwks: { keys: [EXAMPLE_JWK] } }]
})
export type PutAgentKeys = Static<typeof PutAgentKeys>

export const AgentKeys = Type.Object({
  agentId: Uuid,
  jwks: Type.Union([Type.Object({ keys: Type.Array(Type.Object({}, { additionalProperties: true })) }), Type.Null()]),
  jwksUri: Type.Union([Type.String(), Type.Null()]),
  updatedAt: Timestamp
}, {
  $id: 'AgentKeys',
  title: 'AgentKeys',
  description: 'The public keys an agent authenticates with (private_key_jwt, jwt-bearer)',
  examples: [{ agentId: EXAMPLE.agentId, jwks: { keys: [EXAMPLE_JWK] }, jwksUri: null, updatedAt: EXAMPLE.updatedAt }]
})
export type AgentKeys = Static<typeof AgentKeys>
