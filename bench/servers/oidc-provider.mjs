// panva's oidc-provider issuing RS256 JWT access tokens for the client_credentials grant: the
// reference the token endpoint is measured against. Prints one JSON line once it listens.
import { generateKeyPairSync } from 'node:crypto'
import Provider from 'oidc-provider'

const port = Number(process.argv[2])
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench', alg: 'RS256', use: 'sig' }
const client = { client_id: 'bench-client', client_secret: 'bench-secret-'.padEnd(48, 'x') }

const provider = new Provider(`http://127.0.0.1:${port}`, {
  clients: [{ ...client, grant_types: ['client_credentials'], response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_basic', scope: 'api:read' }],
  jwks: { keys: [jwk] },
  scopes: ['api:read'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => 'urn:bench:api',
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({ scope: 'api:read', accessTokenFormat: 'jwt', accessTokenTTL: 3600, jwt: { sign: { alg: 'RS256' } } })
    }
  }
})
provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ ready: true, tokenPath: '/token', ...client }) + '\n')
})
