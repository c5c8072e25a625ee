import t from 'tap'
import * as oidc from 'openid-client'
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose'
import { build } from '../../helper.js'
import { bootstrapClient, registerClient } from './support.js'
import { sparePort } from '../../support/private-services.js'

/**
 * End to end with a standard OAuth client library written elsewhere (panva's openid-client v6):
 * RFC 8414 discovery, the client_credentials grant, RFC 7662 introspection and RFC 7009
 * revocation over real HTTP, then offline verification of the token against the metadata's
 * jwks_uri, as any resource server would do it.
 */

const port = await sparePort()
const issuer = `http://127.0.0.1:${port}`
const app = await build(t, { env: { ISSUER_URL: issuer } })
await app.listen({ port, host: '127.0.0.1' })
const admin = await bootstrapClient(app)
const client = await registerClient(app, admin.headers, { capabilities: ['docs:read', 'docs:write'], audiences: ['https://api.example.com/'] })

async function configure (authentication: oidc.ClientAuth): Promise<oidc.Configuration> {
  return await oidc.discovery(new URL(issuer), client.agentId, client.secret, authentication, {
    algorithm: 'oauth2',
    execute: [oidc.allowInsecureRequests]
  })
}

t.test('openid-client discovers the server from its RFC 8414 metadata', async (t) => {
  const config = await configure(oidc.ClientSecretBasic())
  const metadata = config.serverMetadata()
  t.equal(metadata.issuer, issuer)
  t.equal(metadata.token_endpoint, `${issuer}/api/v1/token`)
  t.ok(metadata.jwks_uri?.startsWith(`${issuer}/`))
})

t.test('client_secret_basic: obtain, introspect, verify offline against jwks_uri, revoke', async (t) => {
  const config = await configure(oidc.ClientSecretBasic())
  const tokens = await oidc.clientCredentialsGrant(config, { scope: 'docs:read' })
  t.equal(tokens.token_type, 'bearer', 'token_type Bearer (the library lower-cases it)')
  t.equal(tokens.scope, 'docs:read')
  t.equal(tokens.expires_in, 3600)

  const active = await oidc.tokenIntrospection(config, tokens.access_token)
  t.match(active, { active: true, sub: client.agentId, client_id: client.agentId, scope: 'docs:read', iss: issuer, token_type: 'Bearer' })

  const jwks = createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri as string))
  const { payload, protectedHeader } = await jwtVerify(tokens.access_token, jwks, {
    issuer, audience: issuer, typ: 'at+jwt', algorithms: ['RS256']
  })
  t.equal(payload.sub, client.agentId)
  t.equal(protectedHeader.typ, 'at+jwt')

  await oidc.tokenRevocation(config, tokens.access_token)
  t.same(await oidc.tokenIntrospection(config, tokens.access_token), { active: false }, 'revoked: inactive for introspection')
  // documented limit: an offline verifier sees the signature, not the revocation, until exp
  await t.resolves(jwtVerify(tokens.access_token, jwks, { issuer, audience: issuer }), 'still verifies offline')
})

t.test('client_secret_post: the same flow with credentials in the body', async (t) => {
  const config = await configure(oidc.ClientSecretPost())
  const tokens = await oidc.clientCredentialsGrant(config)
  t.equal(tokens.scope, 'docs:read docs:write', 'default scope: every capability')
  t.equal((await oidc.tokenIntrospection(config, tokens.access_token)).active, true)
  await oidc.tokenRevocation(config, tokens.access_token)
  t.equal((await oidc.tokenIntrospection(config, tokens.access_token)).active, false)
})

t.test('a resource indicator becomes the audience the offline verifier checks', async (t) => {
  const config = await configure(oidc.ClientSecretBasic())
  const resource = 'https://api.example.com/'
  const tokens = await oidc.clientCredentialsGrant(config, { resource })
  const jwks = createRemoteJWKSet(new URL(config.serverMetadata().jwks_uri as string))
  await t.resolves(jwtVerify(tokens.access_token, jwks, { issuer, audience: resource }))
  await t.rejects(jwtVerify(tokens.access_token, jwks, { issuer, audience: issuer }), 'not valid for the IdP audience')
})

t.test('a wrong secret makes the library raise the server\'s 401 with its Basic challenge', async (t) => {
  // a different last character, never by chance the same secret (it ended in "AA" once in 4,096 runs)
  const wrong = `${client.secret.slice(0, -1)}${client.secret.endsWith('A') ? 'B' : 'A'}`
  const config = await oidc.discovery(new URL(issuer), client.agentId, wrong, oidc.ClientSecretBasic(), {
    algorithm: 'oauth2',
    execute: [oidc.allowInsecureRequests]
  })
  // the library reports a 401 carrying WWW-Authenticate as the challenge it is (RFC 6749 §5.2)
  const failure = await oidc.clientCredentialsGrant(config).then(() => null, (error: unknown) => error)
  t.match(failure, { name: 'WWWAuthenticateChallengeError', status: 401 })
  t.equal((failure as { cause?: Array<{ scheme: string }> }).cause?.[0]?.scheme, 'basic')
})

t.test('openid-client performs a token exchange (RFC 8693) with its generic grant request', async (t) => {
  const actor = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })
  const allowed = await app.inject({
    method: 'PATCH', url: `/api/v1/agents/${client.agentId}`, headers: { ...admin.headers, 'content-type': 'application/json' }, payload: { mayAct: [actor.agentId] }
  })
  t.equal(allowed.statusCode, 200)
  const subject = await configure(oidc.ClientSecretBasic())
  const subjectTokens = await oidc.clientCredentialsGrant(subject)
  const actorConfig = await oidc.discovery(new URL(issuer), actor.agentId, actor.secret, oidc.ClientSecretPost(), {
    algorithm: 'oauth2',
    execute: [oidc.allowInsecureRequests]
  })
  t.ok(actorConfig.serverMetadata().grant_types_supported?.includes('urn:ietf:params:oauth:grant-type:token-exchange'), 'the grant is advertised')

  const exchanged = await oidc.genericGrantRequest(actorConfig, 'urn:ietf:params:oauth:grant-type:token-exchange', {
    subject_token: subjectTokens.access_token,
    subject_token_type: 'urn:ietf:params:oauth:token-type:access_token'
  })
  t.equal(exchanged.issued_token_type, 'urn:ietf:params:oauth:token-type:access_token')
  t.equal(exchanged.scope, 'docs:read', 'the subject\'s scope narrowed to what the actor can do')
  // the subject introspects a token issued on its behalf: it names the actor in act
  t.match(await oidc.tokenIntrospection(subject, exchanged.access_token), { active: true, sub: client.agentId, client_id: actor.agentId, act: { sub: actor.agentId } })
  const jwks = createRemoteJWKSet(new URL(subject.serverMetadata().jwks_uri as string))
  const { payload } = await jwtVerify(exchanged.access_token, jwks, { issuer, audience: issuer, typ: 'at+jwt' })
  t.ok((payload.exp as number) <= (decodeJwt(subjectTokens.access_token).exp as number), 'it verifies offline and expires no later than the subject token')
})
