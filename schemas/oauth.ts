import { Type } from 'typebox'
import { EXAMPLE } from './common.js'
import { DPOP_ALGORITHMS } from '../lib/protected-resource.js'

/**
 * OAuth endpoint shapes. Field names are the RFCs' (snake_case). Bodies arrive form-encoded
 * (RFC 6749) or as JSON; a repeated parameter is refused before validation (routes/oauth/index.ts),
 * except where a route lists it as repeatable (the token endpoint's `resource`).
 */
const Param = (maxLength: number, description?: string, examples?: string[]) =>
  Type.String({
    minLength: 1,
    maxLength,
    pattern: '^[^\\u0000-\\u001f\\u007f]*$',
    ...(description === undefined ? {} : { description }),
    ...(examples === undefined ? {} : { examples })
  })

const EXAMPLE_TOKEN = 'eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IjdmM2E5YzIxIn0.eyJpc3MiOiJodHRwOi8vbG9jYWxob3N0OjMwMDAiLCJzdWIiOiIzZjhlMmE0Yy05YjFkLTRlNmYtOGEyYi03YzVkMWU5ZjBhM2IifQ.c2lnbmF0dXJl'

const ClientCredentials = {
  client_id: Type.Optional(Param(64, 'client_secret_post: the agentId; leave out with HTTP Basic; optional with client_assertion', [EXAMPLE.agentId])),
  client_secret: Type.Optional(Param(256, 'client_secret_post: the secret; leave out with HTTP Basic', [EXAMPLE.clientSecret])),
  // no examples: Swagger UI's form would send them along with a secret
  client_assertion_type: Type.Optional(Param(128, 'private_key_jwt (RFC 7523 §2.2): urn:ietf:params:oauth:client-assertion-type:jwt-bearer')),
  client_assertion: Type.Optional(Param(16_384, 'private_key_jwt: a JWT signed by one of the agent\'s registered keys (iss = sub = agentId, aud = the issuer, exp ≤ 300 s ahead, a single-use jti), a federated issuer\'s token naming one of its federated subjects, or — iss = sub = an https URL — a JWT signed by a key of the client metadata document at that URL (README, "Client ID metadata documents")'))
}

export const GRANT_CLIENT_CREDENTIALS = 'client_credentials'
export const GRANT_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
export const GRANT_JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer'
/** RFC 8693 §3: the only token type this issuer takes and issues in an exchange */
export const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token' as const

/** At most this many `resource` values in one token request (as many as an agent may list audiences). */
export const MAX_RESOURCES = 20

export const TokenRequest = Type.Object({
  grant_type: Param(128, `${GRANT_CLIENT_CREDENTIALS}, ${GRANT_TOKEN_EXCHANGE} (RFC 8693) or ${GRANT_JWT_BEARER} (RFC 7523)`, [GRANT_CLIENT_CREDENTIALS]),
  assertion: Type.Optional(Param(16_384, `${GRANT_JWT_BEARER}: the agent's own signed JWT, or a federated issuer's token (a Kubernetes service-account token, a SPIFFE JWT-SVID, a GitHub Actions OIDC token) naming one of its federated subjects`)),
  scope: Type.Optional(Type.String({ maxLength: 4096, pattern: '^[\\x20-\\x7e]*$', description: 'space-separated; left out: every capability (for an exchange: the subject token\'s scope ∩ the actor\'s capabilities)', examples: ['agents:read agents:write'] })),
  resource: Type.Optional(Type.Union([
    Param(2048, 'RFC 8707 resource indicator: the issuer, or one of the agent\'s audiences (https; http only for a loopback host); becomes aud (left out: the issuer)', ['https://api.example.com/orders']),
    Type.Array(Param(2048), { minItems: 1, maxItems: MAX_RESOURCES, uniqueItems: true, description: 'several resource indicators (the form parameter repeated, RFC 8707 §2): each allowed as one alone would be; aud is their array' })
  ], { description: 'RFC 8707 resource indicator(s); a target outside the agent\'s audiences is invalid_target' })),
  // the token-exchange parameters carry no example: Swagger UI's form would send it with client_credentials
  audience: Type.Optional(Param(2048, 'token exchange: the audience of the issued token (RFC 8693 §2.1); like one resource, checked against the acting agent\'s audiences')),
  subject_token: Type.Optional(Param(16_384, 'token exchange: an access token of this issuer, the party on whose behalf the actor acts')),
  subject_token_type: Type.Optional(Param(128, `token exchange: ${TOKEN_TYPE_ACCESS_TOKEN}`)),
  actor_token: Type.Optional(Param(16_384, 'token exchange: an access token of the authenticated client itself (optional)')),
  actor_token_type: Type.Optional(Param(128, `token exchange, with actor_token: ${TOKEN_TYPE_ACCESS_TOKEN}`)),
  requested_token_type: Type.Optional(Param(128, `token exchange: ${TOKEN_TYPE_ACCESS_TOKEN} (the default)`)),
  ...ClientCredentials
}, {
  $id: 'TokenRequest',
  additionalProperties: false,
  title: 'TokenRequest',
  description: 'RFC 6749 §4.4.2, RFC 8693 §2.1 (token exchange) or RFC 7523 §2.1 (jwt-bearer). The client authenticates with HTTP Basic (client_secret_basic), with client_id and client_secret here (client_secret_post), or with client_assertion (private_key_jwt): one of them. The jwt-bearer grant\'s assertion authenticates the agent by itself.',
  examples: [{ grant_type: 'client_credentials' }]
})

export const TokenResponse = Type.Object({
  access_token: Type.String({ description: 'an RFC 9068 JWT (signed with JWT_ALG: RS256 by default, ES256 or EdDSA), to send as `Authorization: Bearer <access_token>`' }),
  issued_token_type: Type.Optional(Type.Literal(TOKEN_TYPE_ACCESS_TOKEN, { description: 'token exchange only (RFC 8693 §2.2.1)' })),
  token_type: Type.Union([Type.Literal('Bearer'), Type.Literal('DPoP')], { description: 'DPoP when the request carried a DPoP proof (RFC 9449): the token is bound to its key (cnf.jkt)' }),
  expires_in: Type.Integer({ description: 'seconds until it expires' }),
  scope: Type.String({ description: 'the scopes granted, space-separated' })
}, {
  $id: 'TokenResponse',
  title: 'TokenResponse',
  description: 'RFC 6749 §5.1',
  examples: [{ access_token: EXAMPLE_TOKEN, token_type: 'Bearer', expires_in: 3600, scope: 'agents:read agents:write' }]
})

export const TokenParameter = Type.Object({
  token: Param(16_384, 'the access token', [EXAMPLE_TOKEN]),
  token_type_hint: Type.Optional(Param(64, 'ignored: there are only access tokens', ['access_token'])),
  ...ClientCredentials
}, {
  $id: 'TokenParameter',
  additionalProperties: false,
  title: 'TokenParameter',
  description: 'The token to introspect (RFC 7662 §2.1) or revoke (RFC 7009 §2.1)',
  examples: [{ token: EXAMPLE_TOKEN }]
})

export const IntrospectionResponse = Type.Object({
  active: Type.Boolean(),
  scope: Type.Optional(Type.String()),
  client_id: Type.Optional(Type.String()),
  sub: Type.Optional(Type.String()),
  iss: Type.Optional(Type.String()),
  aud: Type.Optional(Type.Union([Type.String(), Type.Array(Type.String())])),
  exp: Type.Optional(Type.Integer()),
  iat: Type.Optional(Type.Integer()),
  jti: Type.Optional(Type.String()),
  token_type: Type.Optional(Type.Union([Type.Literal('Bearer'), Type.Literal('DPoP')])),
  act: Type.Optional(Type.Object({}, { additionalProperties: true })),
  cnf: Type.Optional(Type.Object({}, { additionalProperties: true }))
}, {
  $id: 'IntrospectionResponse',
  title: 'IntrospectionResponse',
  description: 'RFC 7662 §2.2: exactly {"active": false} for a token that is not valid now or not visible to the caller',
  examples: [{
    active: true,
    scope: 'agents:read agents:write',
    client_id: EXAMPLE.agentId,
    sub: EXAMPLE.agentId,
    iss: 'http://localhost:3000',
    aud: 'http://localhost:3000',
    exp: 1796118600,
    iat: 1796115000,
    jti: 't3Ecbm3TT4uZ4V0hp6Xvd9R2rzXxkPcO2Z0mVaHX3Fg',
    token_type: 'Bearer'
  }]
})

export const OAuthErrorBody = Type.Object({
  error: Type.String({ description: 'RFC 6749 §5.2 error code' }),
  error_description: Type.String()
}, {
  $id: 'OAuthError',
  title: 'OAuthError',
  description: 'RFC 6749 §5.2 (application/json)',
  examples: [{ error: 'invalid_client', error_description: 'client authentication failed' }]
})

export const Jwks = Type.Object({
  keys: Type.Array(Type.Object({
    kty: Type.String({ description: 'RSA, EC or OKP' }),
    n: Type.Optional(Type.String({ description: 'RSA: the modulus' })),
    e: Type.Optional(Type.String({ description: 'RSA: the exponent' })),
    crv: Type.Optional(Type.String({ description: 'EC: P-256; OKP: Ed25519' })),
    x: Type.Optional(Type.String({ description: 'EC and OKP: the public point (x coordinate)' })),
    y: Type.Optional(Type.String({ description: 'EC: the y coordinate' })),
    kid: Type.String({ description: 'the RFC 7638 SHA-256 thumbprint of the key' }),
    alg: Type.String({ description: 'the one algorithm this key verifies: RS256 (RSA), ES256 (EC P-256) or EdDSA (Ed25519)' }),
    use: Type.String()
  }))
}, {
  $id: 'JWKS',
  title: 'JWKS',
  description: 'RFC 7517 JSON Web Key Set: public members only. The current signing key (of JWT_ALG) and any previous or next key, each with its own alg: during a change of algorithm the set holds keys of both.',
  examples: [{
    keys: [{
      kty: 'RSA',
      n: 'u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw',
      e: 'AQAB',
      kid: '7f3a9c21',
      alg: 'RS256',
      use: 'sig'
    }]
  }]
})

export const AuthorizationServerMetadata = Type.Object({
  issuer: Type.String(),
  token_endpoint: Type.String(),
  jwks_uri: Type.String(),
  introspection_endpoint: Type.String(),
  revocation_endpoint: Type.String(),
  grant_types_supported: Type.Array(Type.String()),
  token_exchange_token_types_supported: Type.Array(Type.String(), { description: 'RFC 8693: the subject, actor and requested token types this issuer exchanges' }),
  token_endpoint_auth_methods_supported: Type.Array(Type.String()),
  token_endpoint_auth_signing_alg_values_supported: Type.Array(Type.String(), { description: 'private_key_jwt: the algorithms of an agent\'s own keys' }),
  introspection_endpoint_auth_methods_supported: Type.Array(Type.String()),
  introspection_endpoint_auth_signing_alg_values_supported: Type.Array(Type.String()),
  revocation_endpoint_auth_methods_supported: Type.Array(Type.String()),
  revocation_endpoint_auth_signing_alg_values_supported: Type.Array(Type.String()),
  dpop_signing_alg_values_supported: Type.Array(Type.String(), { description: 'RFC 9449: the DPoP proof algorithms accepted' }),
  scopes_supported: Type.Array(Type.String()),
  response_types_supported: Type.Array(Type.String()),
  client_id_metadata_document_supported: Type.Boolean({ description: 'draft-ietf-oauth-client-id-metadata-document: a client_id that is an https URL names the client\'s metadata document (private_key_jwt with its keys; scopes as the policy grants its host)' }),
  service_documentation: Type.Optional(Type.String())
}, {
  $id: 'AuthorizationServerMetadata',
  title: 'AuthorizationServerMetadata',
  description: 'RFC 8414',
  examples: [{
    issuer: 'http://localhost:3000',
    token_endpoint: 'http://localhost:3000/api/v1/token',
    jwks_uri: 'http://localhost:3000/.well-known/jwks.json',
    introspection_endpoint: 'http://localhost:3000/api/v1/token/introspect',
    revocation_endpoint: 'http://localhost:3000/api/v1/token/revoke',
    grant_types_supported: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange', 'urn:ietf:params:oauth:grant-type:jwt-bearer'],
    token_exchange_token_types_supported: ['urn:ietf:params:oauth:token-type:access_token'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
    token_endpoint_auth_signing_alg_values_supported: ['RS256', 'ES256', 'EdDSA', 'Ed25519'],
    introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'bearer'],
    introspection_endpoint_auth_signing_alg_values_supported: ['RS256', 'ES256', 'EdDSA', 'Ed25519'],
    revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'bearer'],
    revocation_endpoint_auth_signing_alg_values_supported: ['RS256', 'ES256', 'EdDSA', 'Ed25519'],
    dpop_signing_alg_values_supported: ['RS256', 'ES256', 'EdDSA', 'Ed25519', 'PS256'],
    scopes_supported: ['agents:read', 'agents:write', 'credentials:read', 'credentials:write', 'tokens:read', 'audit:read'],
    response_types_supported: [],
    client_id_metadata_document_supported: true,
    service_documentation: 'http://localhost:3000/docs'
  }]
})

export const ProtectedResourceMetadata = Type.Object({
  resource: Type.String({ description: 'the management API\'s resource identifier: ISSUER_URL (the audience of its tokens)' }),
  authorization_servers: Type.Array(Type.String(), { description: 'issuers whose tokens it takes: this one' }),
  scopes_supported: Type.Array(Type.String(), { description: 'the platform scopes its operations require' }),
  bearer_methods_supported: Type.Array(Type.String(), { description: 'the Authorization header only (RFC 6750 §2.1)' }),
  resource_name: Type.String(),
  resource_documentation: Type.Optional(Type.String({ description: 'the API reference (Swagger UI), when DOCS_ENABLED' })),
  dpop_signing_alg_values_supported: Type.Array(Type.String(), { description: 'RFC 9449: the algorithms a DPoP proof may use' }),
  dpop_bound_access_tokens_required: Type.Boolean({ description: 'false: a Bearer token is accepted unless it is DPoP-bound' })
}, {
  $id: 'ProtectedResourceMetadata',
  title: 'ProtectedResourceMetadata',
  description: 'RFC 9728 §2: the management API as an OAuth protected resource',
  examples: [{
    resource: 'http://localhost:3000',
    authorization_servers: ['http://localhost:3000'],
    scopes_supported: ['agents:read', 'agents:write', 'credentials:read', 'credentials:write', 'tokens:read', 'audit:read'],
    bearer_methods_supported: ['header'],
    resource_name: 'AgentIdP management API',
    resource_documentation: 'http://localhost:3000/docs',
    dpop_signing_alg_values_supported: [...DPOP_ALGORITHMS],
    dpop_bound_access_tokens_required: false
  }]
})
