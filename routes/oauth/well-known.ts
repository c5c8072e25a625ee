import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { TSchema } from 'typebox'
import {
  AuthorizationServerMetadata, GRANT_CLIENT_CREDENTIALS, GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE, Jwks, ProtectedResourceMetadata, TOKEN_TYPE_ACCESS_TOKEN
} from '../../schemas/oauth.js'
import { AGENT_KEY_ALGORITHMS } from '../../lib/public-jwk.js'
import { DPOP_ALGORITHMS, PROTECTED_RESOURCE_METADATA_PATH } from '../../lib/protected-resource.js'
import { json, problemResponses } from '../../schemas/responses.js'

/**
 * Discovery: the JWKS (public members only), RFC 8414 metadata and the management API's RFC 9728
 * protected resource metadata. With an ISSUER_URL that has a path (https://example.com/idp) the
 * authorization server metadata lives at /.well-known/oauth-authorization-server/idp, as RFC 8414
 * §3 inserts the well-known segment between host and path; the protected resource metadata is
 * served both at the issuer followed by its well-known path (what 401 challenges name) and at
 * RFC 9728 §3.1's /.well-known/oauth-protected-resource/idp; the other URLs are the issuer
 * followed by the API paths.
 */
const wellKnown: FastifyPluginAsyncTypebox = async function wellKnownRoutes (app) {
  const issuer = app.config.ISSUER_URL
  const base = issuer.replace(/\/+$/, '')
  const issuerPath = new URL(issuer).pathname.replace(/\/+$/, '')
  const clientAuthMethods = ['client_secret_basic', 'client_secret_post', 'private_key_jwt']
  const metadata = {
    issuer,
    token_endpoint: `${base}/api/v1/token`,
    jwks_uri: `${base}/.well-known/jwks.json`,
    introspection_endpoint: `${base}/api/v1/token/introspect`,
    revocation_endpoint: `${base}/api/v1/token/revoke`,
    grant_types_supported: [GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE, GRANT_JWT_BEARER],
    // not a registered RFC 8414 name: RFC 8693 defines none for the token types an exchange takes
    token_exchange_token_types_supported: [TOKEN_TYPE_ACCESS_TOKEN],
    token_endpoint_auth_methods_supported: clientAuthMethods,
    // the algorithms an agent's own keys sign with; a federated issuer's token is judged by that issuer's list
    token_endpoint_auth_signing_alg_values_supported: [...AGENT_KEY_ALGORITHMS],
    introspection_endpoint_auth_methods_supported: [...clientAuthMethods, 'bearer'],
    introspection_endpoint_auth_signing_alg_values_supported: [...AGENT_KEY_ALGORITHMS],
    revocation_endpoint_auth_methods_supported: [...clientAuthMethods, 'bearer'],
    revocation_endpoint_auth_signing_alg_values_supported: [...AGENT_KEY_ALGORITHMS],
    // RFC 9449 §5.1: the algorithms of the DPoP proofs this server verifies
    dpop_signing_alg_values_supported: [...DPOP_ALGORITHMS],
    // what the policy plugin loaded from POLICY_DIR: a custom policy never drifts from this list
    scopes_supported: [...app.policy.platformScopes],
    response_types_supported: [],
    // a client_id that is an https URL: plugins/client-metadata.ts
    client_id_metadata_document_supported: true,
    ...(app.config.DOCS_ENABLED ? { service_documentation: `${base}/docs` } : {})
  }
  // RFC 9728 §2: the management API, whose tokens' audience is the issuer
  const resourceMetadata = {
    resource: issuer,
    authorization_servers: [issuer],
    scopes_supported: [...app.policy.platformScopes],
    bearer_methods_supported: ['header'],
    resource_name: 'AgentIdP management API',
    ...(app.config.DOCS_ENABLED ? { resource_documentation: `${base}/docs` } : {}),
    dpop_signing_alg_values_supported: [...DPOP_ALGORITHMS],
    dpop_bound_access_tokens_required: false
  }

  /** A public discovery document: cacheable for five minutes (clients re-read it on an unknown kid). */
  function discoveryDocument (url: string, operationId: string, summary: string, response: TSchema, produce: () => unknown): void {
    app.get(url, {
      schema: {
        tags: ['oauth'],
        operationId,
        summary,
        security: [],
        // a 503 only while the server sheds load (plugins/load-shedding.ts): not an OAuth error, a problem
        response: { 200: json(response, 'The document (Cache-Control: public, max-age=300)'), ...problemResponses({ 503: ['SERVICE_UNAVAILABLE'] }) }
      }
    }, async function serveDiscoveryDocument (_request, reply) {
      reply.header('cache-control', 'public, max-age=300')
      return produce()
    })
  }

  discoveryDocument('/.well-known/jwks.json', 'getJwks',
    'Public signing keys (RFC 7517): the current key and any previous or next key', Jwks, () => app.keys.jwks())
  discoveryDocument(`/.well-known/oauth-authorization-server${issuerPath}`, 'getServerMetadata',
    'Authorization server metadata (RFC 8414)', AuthorizationServerMetadata, () => metadata)
  discoveryDocument(PROTECTED_RESOURCE_METADATA_PATH, 'getProtectedResourceMetadata',
    'Protected resource metadata of the management API (RFC 9728)', ProtectedResourceMetadata, () => resourceMetadata)
  if (issuerPath !== '') {
    discoveryDocument(`${PROTECTED_RESOURCE_METADATA_PATH}${issuerPath}`, 'getProtectedResourceMetadataForPath',
      'Protected resource metadata of the management API (RFC 9728 §3.1: the issuer\'s path after the well-known segment)', ProtectedResourceMetadata, () => resourceMetadata)
  }
}

export default wellKnown
