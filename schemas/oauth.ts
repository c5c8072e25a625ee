import { Type } from 'typebox'

/**
 * OAuth endpoint shapes. Field names are the RFCs' (snake_case). Bodies arrive form-encoded
 * (RFC 6749) or as JSON; a repeated parameter is refused before validation (plugins/client-auth.ts).
 */
const Param = (maxLength: number, description?: string) =>
  Type.String({ minLength: 1, maxLength, pattern: '^[^\\u0000-\\u001f\\u007f]*$', ...(description === undefined ? {} : { description }) })

const ClientCredentials = {
  client_id: Type.Optional(Param(64, 'client_secret_post: the agentId')),
  client_secret: Type.Optional(Param(256, 'client_secret_post: the secret'))
}

export const GRANT_CLIENT_CREDENTIALS = 'client_credentials'
export const GRANT_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
/** RFC 8693 §3: the only token type this issuer takes and issues in an exchange */
export const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token' as const

export const TokenRequest = Type.Object({
  grant_type: Param(128, `${GRANT_CLIENT_CREDENTIALS}, or ${GRANT_TOKEN_EXCHANGE} (RFC 8693)`),
  scope: Type.Optional(Type.String({ maxLength: 4096, pattern: '^[\\x20-\\x7e]*$', description: 'space-separated; default: every capability (for an exchange: the subject token\'s scope ∩ the actor\'s capabilities)' })),
  resource: Type.Optional(Param(2048, 'RFC 8707 resource indicator; becomes aud')),
  audience: Type.Optional(Param(2048, 'token exchange: the audience of the issued token (RFC 8693 §2.1); like resource')),
  subject_token: Type.Optional(Param(16_384, 'token exchange: an access token of this issuer, the party on whose behalf the actor acts')),
  subject_token_type: Type.Optional(Param(128, `token exchange: ${TOKEN_TYPE_ACCESS_TOKEN}`)),
  actor_token: Type.Optional(Param(16_384, 'token exchange: an access token of the authenticated client itself (optional)')),
  actor_token_type: Type.Optional(Param(128, `token exchange, with actor_token: ${TOKEN_TYPE_ACCESS_TOKEN}`)),
  requested_token_type: Type.Optional(Param(128, `token exchange: ${TOKEN_TYPE_ACCESS_TOKEN} (the default)`)),
  ...ClientCredentials
}, { additionalProperties: false, title: 'TokenRequest' })

export const TokenResponse = Type.Object({
  access_token: Type.String(),
  issued_token_type: Type.Optional(Type.Literal(TOKEN_TYPE_ACCESS_TOKEN, { description: 'token exchange only (RFC 8693 §2.2.1)' })),
  token_type: Type.Literal('Bearer'),
  expires_in: Type.Integer(),
  scope: Type.String()
}, { title: 'TokenResponse' })

export const TokenParameter = Type.Object({
  token: Param(16_384),
  token_type_hint: Type.Optional(Param(64)),
  ...ClientCredentials
}, { additionalProperties: false, title: 'TokenParameter' })

export const Introspection = Type.Object({
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
}, { title: 'Introspection' })

export const OAuthErrorBody = Type.Object({
  error: Type.String(),
  error_description: Type.String()
}, { title: 'OAuthError', description: 'RFC 6749 §5.2' })

/** 413 and 415 as for the management routes: a body too large, or neither form nor JSON */
export const OAuthErrors = {
  400: OAuthErrorBody,
  401: OAuthErrorBody,
  413: OAuthErrorBody,
  415: OAuthErrorBody,
  429: OAuthErrorBody,
  503: OAuthErrorBody
} as const

export const Jwks = Type.Object({
  keys: Type.Array(Type.Object({
    kty: Type.String(), n: Type.String(), e: Type.String(), kid: Type.String(), alg: Type.String(), use: Type.String()
  }))
}, { title: 'JWKS' })

export const ServerMetadata = Type.Object({
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
}, { title: 'AuthorizationServerMetadata', description: 'RFC 8414' })
