import { Type, type Static } from 'typebox'
import { EXAMPLE, ref, SafeText, Timestamp, Uuid } from './common.js'
import { FEDERATION_ALGORITHMS, MAX_ISSUER_KEYS } from '../lib/public-jwk.js'

/**
 * Trusted external issuers (workload identity federation, API.md "Agents without secrets"): a
 * platform whose JWTs (GitHub Actions OIDC tokens, Kubernetes service account tokens, SPIFFE
 * JWT-SVIDs) may authenticate an agent that lists one of its subjects. What the schema can't say
 * (exactly one key source, a parseable URL, the keys themselves) routes/federation/index.ts checks.
 */

/** The most issuers one deployment trusts: the list answers all of them in one response. */
export const MAX_FEDERATION_ISSUERS = 100

// RFC 3986 characters: a host (reg-name, IPv4 or [IPv6], optional port) without userinfo, a path
const HOST = "[A-Za-z0-9._~%!$&'()*+,;=:\\[\\]-]+"
const PATH = "(/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?"
const QUERY = "(\\?[A-Za-z0-9._~%!$&'()*+,;=:@/?-]*)?"
// SPIFFE trust domain names: lower-case letters, digits, dots, dashes and underscores (SPIFFE-ID §2.1)
const SPIFFE_TRUST_DOMAIN = '[a-z0-9._-]+'

export const IssuerUrl = Type.String({
  minLength: 1,
  maxLength: 2048,
  pattern: `^(https://${HOST}${PATH}|spiffe://${SPIFFE_TRUST_DOMAIN})$`,
  description: 'the `iss` its JWTs carry, compared exactly as written: an https URL without query or fragment (OIDC issuer), ' +
    'or a SPIFFE trust domain as `spiffe://<trust-domain>`; immutable'
})

export const JwksUri = Type.String({
  minLength: 1,
  maxLength: 2048,
  pattern: `^https://${HOST}${PATH}${QUERY}$`,
  description: 'an https URL serving the issuer\'s JWK Set (no fragment)'
})

/** A JWK Set as registered: each key's members are checked by lib/public-jwk.ts, which names the one at fault. */
export const IssuerJwks = Type.Object({
  keys: Type.Array(Type.Object({}, { additionalProperties: true, description: 'a public JWK (RFC 7517): no private members' }), {
    minItems: 1, maxItems: MAX_ISSUER_KEYS
  })
}, {
  additionalProperties: true,
  description: `the issuer's public keys inline: a JWK Set of 1 to ${MAX_ISSUER_KEYS} keys, each fitting one of \`algorithms\` ` +
    '(other members of the set, such as a SPIFFE bundle\'s spiffe_sequence, are kept as given)'
})

export const Audiences = Type.Array(SafeText(1, 2048), {
  minItems: 1,
  maxItems: 10,
  uniqueItems: true,
  description: 'the `aud` values an assertion of this issuer may carry (at least one of them must match)'
})

export const FederationAlgorithm = Type.Enum([...FEDERATION_ALGORITHMS])

export const Algorithms = Type.Array(FederationAlgorithm, {
  minItems: 1,
  maxItems: FEDERATION_ALGORITHMS.length,
  uniqueItems: true,
  description: 'the JWS algorithms accepted from this issuer. Required, without a default: it is a fact about the issuer ' +
    '(GitHub Actions and Kubernetes sign RS256, many SPIFFE deployments ES256), and a guessed default would refuse its tokens or accept more than it uses'
})

const maxLifetimeSeconds = (options: { default?: number } = {}) => Type.Integer({
  minimum: 60,
  maximum: 86400,
  description: 'the longest lifetime (exp − iat) an assertion of this issuer may have, in seconds',
  ...options
})

const ISSUER_EXAMPLE = {
  issuerId: EXAMPLE.issuerId,
  issuer: 'https://token.actions.githubusercontent.com',
  jwksUri: 'https://token.actions.githubusercontent.com/.well-known/jwks',
  discovery: false,
  audiences: ['https://idp.example.com'],
  algorithms: ['RS256'],
  maxLifetimeSeconds: 3600,
  createdAt: EXAMPLE.createdAt,
  updatedAt: EXAMPLE.updatedAt
}

export const FederationIssuer = Type.Object({
  issuerId: Uuid,
  issuer: Type.String({ description: 'the `iss` its JWTs carry (immutable)' }),
  jwks: Type.Optional(Type.Object({ keys: Type.Array(Type.Object({}, { additionalProperties: true })) }, {
    additionalProperties: true, description: 'present when the keys are registered inline'
  })),
  jwksUri: Type.Optional(Type.String({ description: 'present when the keys are fetched from this URL' })),
  discovery: Type.Boolean({ description: 'true when the keys are found by OIDC discovery of the issuer (`/.well-known/openid-configuration` → `jwks_uri`)' }),
  audiences: Type.Array(Type.String()),
  algorithms: Type.Array(Type.String()),
  maxLifetimeSeconds: Type.Integer(),
  createdAt: Timestamp,
  updatedAt: Timestamp
}, {
  $id: 'FederationIssuer',
  title: 'FederationIssuer',
  description: 'A trusted external issuer: its keys come from exactly one of jwks, jwksUri or discovery',
  examples: [ISSUER_EXAMPLE]
})
export type FederationIssuer = Static<typeof FederationIssuer>

export const CreateFederationIssuer = Type.Object({
  issuer: IssuerUrl,
  jwks: Type.Optional(IssuerJwks),
  jwksUri: Type.Optional(JwksUri),
  discovery: Type.Optional(Type.Boolean({ description: 'true: find the keys by OIDC discovery of the issuer (an https issuer only)' })),
  audiences: Audiences,
  algorithms: Algorithms,
  maxLifetimeSeconds: Type.Optional(maxLifetimeSeconds({ default: 3600 }))
}, {
  $id: 'CreateFederationIssuer',
  additionalProperties: false,
  title: 'CreateFederationIssuer',
  description: 'Exactly one key source: `jwks`, `jwksUri` or `discovery: true`. `issuer` is unique; `algorithms` is required (no default).',
  examples: [{
    issuer: 'https://token.actions.githubusercontent.com',
    discovery: true,
    audiences: ['https://idp.example.com'],
    algorithms: ['RS256'],
    maxLifetimeSeconds: 3600
  }]
})
export type CreateFederationIssuer = Static<typeof CreateFederationIssuer>

export const UpdateFederationIssuer = Type.Object({
  jwks: Type.Optional(IssuerJwks),
  jwksUri: Type.Optional(JwksUri),
  discovery: Type.Optional(Type.Boolean({ description: 'true: switch to OIDC discovery (an https issuer only)' })),
  audiences: Type.Optional(Audiences),
  algorithms: Type.Optional(Algorithms),
  maxLifetimeSeconds: Type.Optional(maxLifetimeSeconds())
}, {
  $id: 'UpdateFederationIssuer',
  additionalProperties: false,
  minProperties: 1,
  title: 'UpdateFederationIssuer',
  description: 'At least one field; `issuer` is immutable (delete the issuer and create another). Giving one key source ' +
    '(`jwks`, `jwksUri` or `discovery: true`) replaces the current one. Tokens already issued are left alone; deleting the issuer revokes them.',
  examples: [{ audiences: ['https://idp.example.com', 'https://idp.example.com/api/v1/token'], maxLifetimeSeconds: 900 }]
})
export type UpdateFederationIssuer = Static<typeof UpdateFederationIssuer>

export const FederationIssuerParams = Type.Object({ issuerId: Uuid }, { additionalProperties: false })

export const FederationIssuerList = Type.Object({
  data: Type.Array(ref(FederationIssuer), { maxItems: MAX_FEDERATION_ISSUERS })
}, {
  $id: 'FederationIssuerList',
  title: 'FederationIssuerList',
  description: `Every trusted issuer, ordered by issuer: one response, never paged (a deployment trusts at most ${MAX_FEDERATION_ISSUERS})`,
  examples: [{ data: [ISSUER_EXAMPLE] }]
})
