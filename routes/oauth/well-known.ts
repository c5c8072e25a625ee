import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import type { TSchema } from 'typebox'
import { AuthorizationServerMetadata, GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE, Jwks, TOKEN_TYPE_ACCESS_TOKEN } from '../../schemas/oauth.js'
import { json, problemResponses } from '../../schemas/responses.js'

/**
 * Discovery: the JWKS (public members only) and RFC 8414 metadata. With an ISSUER_URL that has a
 * path (https://example.com/idp) the metadata lives at
 * /.well-known/oauth-authorization-server/idp, as RFC 8414 §3 inserts the well-known segment
 * between host and path; the other URLs are the issuer followed by the API paths.
 */
const wellKnown: FastifyPluginAsyncTypebox = async function wellKnownRoutes (app) {
  const issuer = app.config.ISSUER_URL
  const base = issuer.replace(/\/+$/, '')
  const issuerPath = new URL(issuer).pathname.replace(/\/+$/, '')
  const clientAuthMethods = ['client_secret_basic', 'client_secret_post']
  const metadata = {
    issuer,
    token_endpoint: `${base}/api/v1/token`,
    jwks_uri: `${base}/.well-known/jwks.json`,
    introspection_endpoint: `${base}/api/v1/token/introspect`,
    revocation_endpoint: `${base}/api/v1/token/revoke`,
    grant_types_supported: [GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE],
    // not a registered RFC 8414 name: RFC 8693 defines none for the token types an exchange takes
    token_exchange_token_types_supported: [TOKEN_TYPE_ACCESS_TOKEN],
    token_endpoint_auth_methods_supported: clientAuthMethods,
    introspection_endpoint_auth_methods_supported: [...clientAuthMethods, 'bearer'],
    revocation_endpoint_auth_methods_supported: [...clientAuthMethods, 'bearer'],
    // what the policy plugin loaded from POLICY_DIR: a custom policy never drifts from this list
    scopes_supported: [...app.policy.platformScopes],
    response_types_supported: [],
    ...(app.config.DOCS_ENABLED ? { service_documentation: `${base}/docs` } : {})
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
}

export default wellKnown
