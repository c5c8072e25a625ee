// panva's oidc-provider, the reference: client_credentials issuing JWT access tokens signed with
// argv[3] (RS256, ES256 or EdDSA; or BENCH_ALG), and RFC 7662 introspection. argv: <port> [alg].
//
// Introspection: oidc-provider does not store JWT-format access tokens (formats/jwt.js returns no
// payload to persist), so it answers {active:false} for its own JWTs without looking at them. The
// introspection measurement therefore uses opaque tokens, issued for a second resource server
// (urn:bench:opaque, accessTokenFormat 'opaque') and kept in its in-memory adapter: a lookup, not a
// signature check. The runner asks for them with resource=urn:bench:opaque.
import Provider from 'oidc-provider'
import { announce, onStop } from '../lib/announce.mjs'
import { keyPairFor } from '../lib/jws.mjs'

const port = Number(process.argv[2])
const alg = process.argv[3] ?? process.env.BENCH_ALG ?? 'RS256'
const { privateKey } = keyPairFor(alg)
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: `bench-${alg}`, alg, use: 'sig' }
const client = { client_id: 'bench-client', client_secret: 'bench-secret-'.padEnd(48, 'x') }
const JWT_RESOURCE = 'urn:bench:api'
const OPAQUE_RESOURCE = 'urn:bench:opaque'

const provider = new Provider(`http://127.0.0.1:${port}`, {
  // id_token_signed_response_alg: the client's default (RS256) must be a key the provider holds,
  // though client_credentials never issues an ID token
  clients: [{ ...client, grant_types: ['client_credentials'], response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_basic', scope: 'api:read', id_token_signed_response_alg: alg }],
  jwks: { keys: [jwk] },
  scopes: ['api:read'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // the default policy, written out (the default logs a "should change" warning)
    introspection: { enabled: true, allowedPolicy: async (ctx, caller, token) => caller.clientAuthMethod !== 'none' || token.clientId === caller.clientId },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => JWT_RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, resource) => resource === OPAQUE_RESOURCE
        ? { scope: 'api:read', accessTokenFormat: 'opaque', accessTokenTTL: 3600 }
        : { scope: 'api:read', accessTokenFormat: 'jwt', accessTokenTTL: 3600, jwt: { sign: { alg } } }
    }
  }
})
const server = provider.listen(port, '127.0.0.1', () => {
  announce({ ready: true, alg, tokenPath: '/token', introspectionPath: '/token/introspection', opaqueResource: OPAQUE_RESOURCE, ...client })
})
onStop(() => new Promise((resolve) => server.close(resolve)))
