import { Type } from 'typebox'
import { EXAMPLE } from './common.js'

/**
 * OAuth endpoint shapes. Field names are the RFCs' (snake_case). Bodies arrive form-encoded
 * (RFC 6749) or as JSON; a repeated parameter is refused before validation (plugins/client-auth.ts).
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
  client_id: Type.Optional(Param(64, 'client_secret_post: the agentId; leave out with HTTP Basic', [EXAMPLE.agentId])),
  client_secret: Type.Optional(Param(256, 'client_secret_post: the secret; leave out with HTTP Basic', [EXAMPLE.clientSecret]))
}

export const GRANT_CLIENT_CREDENTIALS = 'client_credentials'
export const GRANT_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
/** RFC 8693 §3: the only token type this issuer takes and issues in an exchange */
export const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token' as const

export const TokenRequest = Type.Object({
  grant_type: Param(128, `${GRANT_CLIENT_CREDENTIALS}, or ${GRANT_TOKEN_EXCHANGE} (RFC 8693)`, [GRANT_CLIENT_CREDENTIALS]),
  scope: Type.Optional(Type.String({ maxLength: 4096, pattern: '^[\\x20-\\x7e]*$', description: 'space-separated; left out: every capability (for an exchange: the subject token\'s scope ∩ the actor\'s capabilities)', examples: ['agents:read agents:write'] })),
  resource: Type.Optional(Param(2048, 'RFC 8707 resource indicator; becomes aud (left out: the issuer)', ['https://api.example.com/orders'])),
  // the token-exchange parameters carry no example: Swagger UI's form would send it with client_credentials
  audience: Type.Optional(Param(2048, 'token exchange: the audience of the issued token (RFC 8693 §2.1); like resource')),
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
  description: 'RFC 6749 §4.4.2, or RFC 8693 §2.1 (token exchange). The client authenticates with HTTP Basic (client_secret_basic) or with client_id and client_secret here (client_secret_post), not both.',
  examples: [{ grant_type: 'client_credentials' }]
})

export const TokenResponse = Type.Object({
  access_token: Type.String({ description: 'an RFC 9068 JWT (RS256), to send as `Authorization: Bearer <access_token>`' }),
  issued_token_type: Type.Optional(Type.Literal(TOKEN_TYPE_ACCESS_TOKEN, { description: 'token exchange only (RFC 8693 §2.2.1)' })),
  token_type: Type.Literal('Bearer'),
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
  token_type: Type.Optional(Type.Literal('Bearer')),
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
    kty: Type.String(), n: Type.String(), e: Type.String(), kid: Type.String(), alg: Type.String(), use: Type.String()
  }))
}, {
  $id: 'JWKS',
  title: 'JWKS',
  description: 'RFC 7517 JSON Web Key Set: public members only',
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
  introspection_endpoint_auth_methods_supported: Type.Array(Type.String()),
  revocation_endpoint_auth_methods_supported: Type.Array(Type.String()),
  scopes_supported: Type.Array(Type.String()),
  response_types_supported: Type.Array(Type.String()),
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
    grant_types_supported: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'],
    token_exchange_token_types_supported: ['urn:ietf:params:oauth:token-type:access_token'],
    token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
    introspection_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'bearer'],
    revocation_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'bearer'],
    scopes_supported: ['agents:read', 'agents:write', 'credentials:read', 'credentials:write', 'tokens:read', 'audit:read'],
    response_types_supported: [],
    service_documentation: 'http://localhost:3000/docs'
  }]
})
