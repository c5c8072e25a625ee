import { randomUUID } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { JWTPayload } from 'jose'
import { build, ISSUER } from '../../helper.js'
import { accessToken, assertOAuthError, auditRows, bootstrapClient, decodeToken, introspect, registerClient } from './support.js'
import { signingKey, signJwt, tokenByGrant, tokenWithAssertion, type SigningKey } from '../../support/assertions.js'
import { selfSignedCertificate, startHttpsServer } from '../../support/https-fixture.js'

/**
 * Workload identity federation: platform tokens with the claims their platforms really issue — a
 * Kubernetes projected service-account token, a GitHub Actions OIDC token, a SPIFFE JWT-SVID —
 * from issuers created in this test (keys inline, at a jwks_uri, or found by OIDC discovery, served
 * over https on loopback), used as the jwt-bearer grant's assertion and as a client_assertion.
 */

const certificate = await selfSignedCertificate('IP:127.0.0.1,DNS:localhost')
const directory = await mkdtemp(join(tmpdir(), 'agentidp-federation-'))
t.teardown(async () => { await rm(directory, { recursive: true, force: true }) })
const caFile = join(directory, 'ca.pem')
await writeFile(caFile, certificate.cert)
const platform = await startHttpsServer(certificate)
t.teardown(platform.close)

const env = {
  RATE_LIMIT_AUTH_FAILURES_PER_IP: '0',
  RATE_LIMIT_TOKEN_PER_CLIENT: '0',
  // the platforms of this test live on loopback, with a certificate of the test's own CA
  REMOTE_FETCH_ALLOW_PRIVATE_NETWORKS: 'true',
  REMOTE_FETCH_CA_FILE: caFile
}
const app = await build(t, { env })
const other = await build(t, { env, databaseUrl: app.databaseUrl })
const admin = await bootstrapClient(app)
const json = { ...admin.headers, 'content-type': 'application/json' }

const KUBERNETES = 'https://kubernetes.default.svc.cluster.local'
const GITHUB = platform.origin // discovery needs the issuer to serve its own document
const SPIRE = 'https://spire.prod.example.org'
const clusterKey = await signingKey('RS256')
const githubKey = await signingKey('RS256')
const spireKey = await signingKey('ES256')

const jwksJson = (keys: SigningKey[]) => JSON.stringify({ keys: keys.map((key) => key.publicJwk) })
let githubKeys = [githubKey]
platform.routes.set('/.well-known/openid-configuration', (_request, response) => {
  response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' })
  response.end(JSON.stringify({ issuer: GITHUB, jwks_uri: `${platform.origin}/.well-known/jwks` }))
})
platform.routes.set('/.well-known/jwks', (_request, response) => {
  response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=300' })
  response.end(jwksJson(githubKeys))
})
platform.routes.set('/spire/keys', (_request, response) => {
  response.writeHead(200, { 'content-type': 'application/jwk-set+json' })
  response.end(jwksJson([spireKey]))
})

async function trust (body: Record<string, unknown>): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/api/v1/federation/issuers', headers: json, payload: body })
  if (res.statusCode !== 201) throw new Error(`issuer: ${res.statusCode} ${res.body}`)
  return res.json().issuerId
}
const clusterIssuerId = await trust({ issuer: KUBERNETES, jwks: { keys: [clusterKey.publicJwk] }, audiences: [ISSUER], algorithms: ['RS256'], maxLifetimeSeconds: 3600 })
await trust({ issuer: GITHUB, discovery: true, audiences: [ISSUER], algorithms: ['RS256'], maxLifetimeSeconds: 900 })
await trust({ issuer: SPIRE, jwksUri: `${platform.origin}/spire/keys`, audiences: ['agentidp'], algorithms: ['ES256'], maxLifetimeSeconds: 300 })

const now = () => Math.floor(Date.now() / 1000)
const SERVICE_ACCOUNT = 'system:serviceaccount:payments:invoice-bot'

/** A projected service-account token as the kubelet mounts it (audience set by the pod spec). */
function kubernetesClaims (overrides: JWTPayload = {}): JWTPayload {
  const iat = now()
  return {
    aud: [ISSUER], exp: iat + 3600, iat, nbf: iat, iss: KUBERNETES, jti: randomUUID(), sub: SERVICE_ACCOUNT,
    'kubernetes.io': {
      namespace: 'payments',
      node: { name: 'ip-10-0-1-23.ec2.internal', uid: randomUUID() },
      pod: { name: 'invoice-bot-6d9f7c9b8-x2x7q', uid: randomUUID() },
      serviceaccount: { name: 'invoice-bot', uid: randomUUID() }
    },
    ...overrides
  }
}

/** A GitHub Actions OIDC token (id-token: write) for a push to main. */
function githubClaims (overrides: JWTPayload = {}): JWTPayload {
  const iat = now()
  return {
    jti: randomUUID(), sub: 'repo:acme/agents:ref:refs/heads/main', aud: ISSUER, ref: 'refs/heads/main', sha: 'd2b1f0c5a9e8', repository: 'acme/agents',
    repository_owner: 'acme', repository_owner_id: '4242', run_id: '8012345678', run_number: '77', run_attempt: '1', repository_visibility: 'private',
    repository_id: '700001', actor_id: '1001', actor: 'octocat', workflow: 'deploy', head_ref: '', base_ref: '', event_name: 'push', ref_type: 'branch',
    workflow_ref: 'acme/agents/.github/workflows/deploy.yml@refs/heads/main', job_workflow_ref: 'acme/agents/.github/workflows/deploy.yml@refs/heads/main',
    environment: 'production', iss: GITHUB, nbf: iat - 5, exp: iat + 300, iat, ...overrides
  }
}

/** A SPIFFE JWT-SVID (sub: the SPIFFE ID; SPIRE's OIDC provider sets iss). */
function spiffeClaims (overrides: JWTPayload = {}): JWTPayload {
  const iat = now()
  return { aud: ['agentidp'], exp: iat + 300, iat, iss: SPIRE, sub: 'spiffe://prod.example.org/ns/payments/sa/invoice-bot', ...overrides }
}

async function federatedAgent (federatedSubjects: unknown[]) {
  const agent = await registerClient(app, admin.headers, { capabilities: ['invoices:read', 'invoices:write'] })
  const res = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.agentId}`, headers: json, payload: { federatedSubjects } })
  if (res.statusCode !== 200) throw new Error(`federatedSubjects: ${res.statusCode} ${res.body}`)
  return agent
}

const kubernetesAgent = await federatedAgent([{ issuer: KUBERNETES, subject: SERVICE_ACCOUNT, conditions: { '/kubernetes.io/namespace': 'payments' } }])
const githubAgent = await federatedAgent([{ issuer: GITHUB, subject: 'repo:acme/agents:ref:refs/heads/main', conditions: { repository: 'acme/agents', environment: 'production' } }])
const spiffeAgent = await federatedAgent([{ issuer: SPIRE, subject: 'spiffe://prod.example.org/ns/payments/sa/invoice-bot' }])

t.test('a Kubernetes service-account token, a GitHub Actions token and a SPIFFE JWT-SVID each obtain their agent\'s token by the jwt-bearer grant', async (t) => {
  const cases: Array<[string, string, string]> = [
    ['kubernetes', await signJwt(clusterKey, kubernetesClaims()), kubernetesAgent.agentId],
    ['github', await signJwt(githubKey, githubClaims()), githubAgent.agentId],
    ['spiffe', await signJwt(spireKey, spiffeClaims(), { typ: 'JWT' }), spiffeAgent.agentId]
  ]
  for (const [name, assertion, agentId] of cases) {
    const res = await tokenByGrant(app, assertion, { scope: 'invoices:read' })
    t.equal(res.statusCode, 200, `${name}: ${res.body}`)
    const { payload } = decodeToken(res.json().access_token)
    t.equal(payload.sub, agentId, `${name}: the token's sub is the agent the subject maps to`)
    t.equal((await introspect(other, res.json().access_token, admin)).active, true, `${name}: valid on the other instance`)
  }
})

t.test('a platform token works as client_assertion for client_credentials (the federated credential shape), with client_id', async (t) => {
  const res = await tokenWithAssertion(app, await signJwt(clusterKey, kubernetesClaims()), { client_id: kubernetesAgent.agentId })
  t.equal(res.statusCode, 200, res.body)
  t.equal(decodeToken(res.json().access_token).payload.sub, kubernetesAgent.agentId)
  const issued = (await auditRows(app, 'token.issued', { agentId: kubernetesAgent.agentId })).at(-1)
  t.equal(issued?.metadata.authMethod, 'private_key_jwt')
  assertOAuthError(t, await tokenWithAssertion(app, await signJwt(clusterKey, kubernetesClaims()), { client_id: githubAgent.agentId }), 401, 'invalid_client')
})

t.test('a platform token is reusable for its lifetime, as platforms hand it out (no single use)', async (t) => {
  const assertion = await signJwt(clusterKey, kubernetesClaims())
  t.equal((await tokenByGrant(app, assertion)).statusCode, 200)
  t.equal((await tokenByGrant(other, assertion)).statusCode, 200)
})

t.test('refusals: untrusted issuer, subject not listed, condition unmet, wrong aud, lifetime over the issuer\'s bound, algorithm not allowed, expired — each invalid_grant and audited', async (t) => {
  const rogue = await signingKey('RS256')
  const es = await signingKey('ES256', clusterKey.kid)
  const cases: Array<[string, string, string]> = [
    ['untrusted issuer', await signJwt(rogue, kubernetesClaims({ iss: 'https://evil.example.com' })), 'untrusted_issuer'],
    ['a key the issuer does not have', await signJwt(rogue, kubernetesClaims(), { kid: clusterKey.kid }), 'bad_signature'],
    ['subject not listed', await signJwt(clusterKey, kubernetesClaims({ sub: 'system:serviceaccount:payments:other-bot' })), 'federated_subject_not_listed'],
    ['condition unmet', await signJwt(clusterKey, kubernetesClaims({ 'kubernetes.io': { namespace: 'sandbox' } })), 'federated_condition_unmet'],
    ['github condition unmet', await signJwt(githubKey, githubClaims({ environment: 'staging' })), 'federated_condition_unmet'],
    ['wrong aud', await signJwt(clusterKey, kubernetesClaims({ aud: ['https://vault.example.com'] })), 'wrong_aud'],
    ['lifetime over the bound', await signJwt(spireKey, spiffeClaims({ exp: now() + 3600 })), 'exp_too_far_ahead'],
    ['algorithm not allowed', await signJwt(es, kubernetesClaims()), 'alg_not_allowed'],
    ['expired', await signJwt(clusterKey, kubernetesClaims({ iat: now() - 7200, nbf: now() - 7200, exp: now() - 3600 })), 'assertion_expired']
  ]
  for (const [name, assertion, reason] of cases) {
    assertOAuthError(t, await tokenByGrant(app, assertion), 400, 'invalid_grant')
    t.ok((await auditRows(app, 'auth.failed')).some((row) => row.metadata.reason === reason && row.metadata.method === 'jwt_bearer'), `${name}: audited as ${reason}`)
  }
})

t.test('a key the issuer rotates in is picked up without waiting for the cache: an unknown kid refetches the jwks_uri (at most once every 10 s)', async (t) => {
  const next = await signingKey('RS256')
  githubKeys = [githubKey, next]
  const fetched = platform.hits('/.well-known/jwks')
  // the keys were fetched moments ago, by the first test: the refetch waits out the 10 s cooldown
  await new Promise((resolve) => setTimeout(resolve, 10_500))
  const res = await tokenByGrant(app, await signJwt(next, githubClaims()))
  t.equal(res.statusCode, 200, res.body)
  t.equal(platform.hits('/.well-known/jwks'), fetched + 1, 'one refetch')
  const made = await signingKey('RS256')
  assertOAuthError(t, await tokenByGrant(app, await signJwt(made, githubClaims())), 400, 'invalid_grant')
  t.equal(platform.hits('/.well-known/jwks'), fetched + 1, 'a made-up kid right after costs the platform no request')
})

t.test('removing a federated subject, or deleting its issuer, stops the tokens it obtained at once', async (t) => {
  const agent = await federatedAgent([{ issuer: KUBERNETES, subject: 'system:serviceaccount:payments:ledger-bot' }])
  const claims = () => kubernetesClaims({ sub: 'system:serviceaccount:payments:ledger-bot' })
  const token = (await tokenByGrant(app, await signJwt(clusterKey, claims()))).json().access_token
  await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.agentId}`, headers: json, payload: { federatedSubjects: [] } })
  t.same(await introspect(other, token, admin), { active: false }, 'the subject\'s token is dead on the other instance')
  assertOAuthError(t, await tokenByGrant(other, await signJwt(clusterKey, claims())), 400, 'invalid_grant')

  const before = (await tokenByGrant(app, await signJwt(clusterKey, kubernetesClaims()))).json().access_token
  const deleted = await app.inject({ method: 'DELETE', url: `/api/v1/federation/issuers/${clusterIssuerId}`, headers: admin.headers })
  t.equal(deleted.statusCode, 204)
  t.same(await introspect(other, before, admin), { active: false }, 'the deleted issuer\'s tokens are dead')
  assertOAuthError(t, await tokenByGrant(other, await signJwt(clusterKey, kubernetesClaims())), 400, 'invalid_grant')
  const agentNow = (await app.inject({ method: 'GET', url: `/api/v1/agents/${kubernetesAgent.agentId}`, headers: admin.headers })).json()
  t.same(agentNow.federatedSubjects, [], 'and the agent lists the subject no more')
})

t.test('federated subjects name registered issuers, and setting them follows the no-escalation rule', async (t) => {
  const agent = await registerClient(app, admin.headers)
  const unknown = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.agentId}`, headers: json, payload: { federatedSubjects: [{ issuer: 'https://unknown.example.com', subject: 'x' }] } })
  t.equal(unknown.statusCode, 400, unknown.body)
  const operator = await registerClient(app, admin.headers, { capabilities: ['agents:write', 'agents:read'] })
  const headers = { authorization: `Bearer ${await accessToken(app, operator)}`, 'content-type': 'application/json' }
  const escalation = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${admin.agentId}`, headers, payload: { federatedSubjects: [{ issuer: SPIRE, subject: 'spiffe://prod.example.org/attacker' }] } })
  t.equal(escalation.statusCode, 403, 'an agents:write holder cannot federate an agent holding scopes it lacks')
  t.ok((await auditRows(app, 'access.denied', { agentId: admin.agentId })).some((row) => row.metadata.reason === 'privilege_escalation'))
  const allowed = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agent.agentId}`, headers, payload: { federatedSubjects: [{ issuer: SPIRE, subject: 'spiffe://prod.example.org/ns/x/sa/y' }] } })
  t.equal(allowed.statusCode, 200, allowed.body)
  t.same(allowed.json().federatedSubjects, [{ issuer: SPIRE, subject: 'spiffe://prod.example.org/ns/x/sa/y' }])
})
