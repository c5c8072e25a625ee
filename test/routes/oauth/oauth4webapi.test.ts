import t from 'tap'
import * as oauth from 'oauth4webapi'
import { build } from '../../helper.js'
import { bootstrapClient, registerClient } from './support.js'
import { putKeys, signingKey } from '../../support/assertions.js'
import { sparePort } from '../../support/private-services.js'

/**
 * private_key_jwt and DPoP end to end with a client library written elsewhere (panva's oauth4webapi v3):
 * RFC 8414 discovery, then the client_credentials grant, introspection and revocation, each with
 * the client authenticating by a JWT the library signs with the agent's registered key, over real
 * HTTP. The library builds the assertion its own way (aud, jti, exp), so this also checks that
 * AgentIdP accepts what a standard client sends.
 */

const port = await sparePort()
const issuer = `http://127.0.0.1:${port}`
const app = await build(t, { env: { ISSUER_URL: issuer } })
await app.listen({ port, host: '127.0.0.1' })
const admin = await bootstrapClient(app)
const agent = await registerClient(app, admin.headers, { capabilities: ['docs:read', 'tokens:read'], authMethods: ['private_key_jwt'] })
const insecure = { [oauth.allowInsecureRequests]: true }

async function server (): Promise<oauth.AuthorizationServer> {
  const url = new URL(issuer)
  return await oauth.processDiscoveryResponse(url, await oauth.discoveryRequest(url, { algorithm: 'oauth2', ...insecure }))
}

for (const alg of ['ES256', 'RS256', 'EdDSA'] as const) {
  t.test(`oauth4webapi with an ${alg} key: client_credentials, introspection and revocation by private_key_jwt`, async (t) => {
    const key = await signingKey(alg)
    t.equal((await putKeys(app, admin.headers, agent.agentId, { jwks: { keys: [key.publicJwk] } })).statusCode, 200)
    const as = await server()
    t.ok(as.token_endpoint_auth_methods_supported?.includes('private_key_jwt'), 'the metadata advertises private_key_jwt')
    t.ok(as.token_endpoint_auth_signing_alg_values_supported?.includes(alg), `and ${alg}`)
    const client: oauth.Client = { client_id: agent.agentId }
    const clientAuth = oauth.PrivateKeyJwt({ key: key.privateKey, kid: key.kid })

    const response = await oauth.clientCredentialsGrantRequest(as, client, clientAuth, new URLSearchParams({ scope: 'docs:read' }), insecure)
    const tokens = await oauth.processClientCredentialsResponse(as, client, response)
    t.equal(tokens.token_type, 'bearer')
    t.equal(tokens.scope, 'docs:read')

    const introspection = await oauth.processIntrospectionResponse(as, client,
      await oauth.introspectionRequest(as, client, clientAuth, tokens.access_token, insecure))
    t.match(introspection, { active: true, sub: agent.agentId, client_id: agent.agentId, scope: 'docs:read' })

    await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, clientAuth, tokens.access_token, insecure))
    const after = await oauth.processIntrospectionResponse(as, client,
      await oauth.introspectionRequest(as, client, clientAuth, tokens.access_token, insecure))
    t.same(after, { active: false }, 'revoked')
  })
}

t.test('oauth4webapi with a key the agent did not register is refused invalid_client', async (t) => {
  const as = await server()
  const client: oauth.Client = { client_id: agent.agentId }
  const stranger = await signingKey('ES256')
  const response = await oauth.clientCredentialsGrantRequest(as, client, oauth.PrivateKeyJwt({ key: stranger.privateKey, kid: stranger.kid }), new URLSearchParams(), insecure)
  t.equal(response.status, 401)
  const error = await oauth.processClientCredentialsResponse(as, client, response).then(() => null, (caught: unknown) => caught)
  t.ok(error instanceof oauth.ResponseBodyError, 'the library reports an OAuth error response')
  t.equal((error as oauth.ResponseBodyError).error, 'invalid_client')
})

async function withNonceRetry (call: () => Promise<Response>, process: (response: Response) => Promise<unknown>): Promise<unknown> {
  // oauth4webapi remembers the DPoP-Nonce of a use_dpop_nonce answer: the retry carries it
  try {
    return await process(await call())
  } catch (error) {
    if (!oauth.isDPoPNonceError(error)) throw error
    return await process(await call())
  }
}

t.test('oauth4webapi DPoP: a bound token by private_key_jwt, then a protected resource request with its proof', async (t) => {
  const key = await signingKey('ES256')
  t.equal((await putKeys(app, admin.headers, agent.agentId, { jwks: { keys: [key.publicJwk] } })).statusCode, 200)
  const as = await server()
  const client: oauth.Client = { client_id: agent.agentId }
  const clientAuth = oauth.PrivateKeyJwt({ key: key.privateKey, kid: key.kid })
  const DPoP = oauth.DPoP(client, await oauth.generateKeyPair('ES256'))
  const tokens = await withNonceRetry(
    async () => await oauth.clientCredentialsGrantRequest(as, client, clientAuth, new URLSearchParams({ scope: 'docs:read' }), { DPoP, ...insecure }),
    async (response) => await oauth.processClientCredentialsResponse(as, client, response)) as oauth.TokenEndpointResponse
  t.equal(tokens.token_type, 'dpop', 'a DPoP token')
  const read = await oauth.protectedResourceRequest(tokens.access_token, 'GET', new URL(`${issuer}/api/v1/agents/${agent.agentId}`), new Headers(), null, { DPoP, ...insecure })
  t.equal(read.status, 200, 'the management API accepts the token with the library\'s proof')
  const asBearer = await fetch(`${issuer}/api/v1/agents/${agent.agentId}`, { headers: { authorization: `Bearer ${tokens.access_token}` } })
  t.equal(asBearer.status, 401, 'and refuses it as a Bearer token')
  t.match(asBearer.headers.get('www-authenticate') ?? '', /^DPoP error="invalid_token"/)
})

t.test('oauth4webapi DPoP against a server that requires nonces: the library retries with the DPoP-Nonce it was given', async (t) => {
  const noncePort = await sparePort()
  const nonceIssuer = `http://127.0.0.1:${noncePort}`
  const strict = await build(t, { env: { ISSUER_URL: nonceIssuer, DPOP_NONCE_REQUIRED: 'true' } })
  await strict.listen({ port: noncePort, host: '127.0.0.1' })
  const root = await bootstrapClient(strict)
  const url = new URL(nonceIssuer)
  const as = await oauth.processDiscoveryResponse(url, await oauth.discoveryRequest(url, { algorithm: 'oauth2', ...insecure }))
  const client: oauth.Client = { client_id: root.agentId }
  const DPoP = oauth.DPoP(client, await oauth.generateKeyPair('EdDSA'))
  let attempts = 0
  const tokens = await withNonceRetry(
    async () => { attempts += 1; return await oauth.clientCredentialsGrantRequest(as, client, oauth.ClientSecretBasic(root.secret), new URLSearchParams(), { DPoP, ...insecure }) },
    async (response) => await oauth.processClientCredentialsResponse(as, client, response)) as oauth.TokenEndpointResponse
  t.equal(attempts, 2, 'refused once with use_dpop_nonce, then accepted')
  t.equal(tokens.token_type, 'dpop')
})
