// Agents without secrets, end to end against a running AgentIdP (README, "Agents without secrets"):
//   1. private_key_jwt: the agent signs a client assertion with its own registered key
//   2. the jwt-bearer grant with the agent's own signed assertion
//   3. workload identity federation: a platform token (here a Kubernetes-shaped service-account
//      token, signed by a "cluster" key this script plays) as the grant's assertion, and as a
//      client_assertion for client_credentials
// Usage: IDP=http://localhost:3000 ADMIN_ID=… ADMIN_SECRET=… node examples/secretless.mjs
// (ADMIN_ID/ADMIN_SECRET: the JSON line `npm run dev` printed). Prints one JSON line per step.
import { randomUUID } from 'node:crypto'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'

const IDP = (process.env.IDP ?? 'http://localhost:3000').replace(/\/+$/, '')
const { ADMIN_ID, ADMIN_SECRET } = process.env
if (ADMIN_ID === undefined || ADMIN_SECRET === undefined) throw new Error('set ADMIN_ID and ADMIN_SECRET (the bootstrap admin)')
// the issuer identifier is what an assertion's aud names: read it from the metadata, as a client would
const issuer = (await (await fetch(`${IDP}/.well-known/oauth-authorization-server`)).json()).issuer

async function call (method, path, { headers = {}, json, form } = {}) {
  const response = await fetch(`${IDP}${path}`, {
    method,
    headers: { ...headers, ...(json === undefined ? {} : { 'content-type': 'application/json' }), ...(form === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' }) },
    body: json !== undefined ? JSON.stringify(json) : form !== undefined ? new URLSearchParams(form) : undefined
  })
  const body = response.status === 204 ? null : await response.json()
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${JSON.stringify(body)}`)
  return body
}
const step = (name, result) => console.log(JSON.stringify({ step: name, ...result }))
const now = () => Math.floor(Date.now() / 1000)

const adminToken = (await call('POST', '/api/v1/token', {
  headers: { authorization: `Basic ${Buffer.from(`${encodeURIComponent(ADMIN_ID)}:${encodeURIComponent(ADMIN_SECRET)}`).toString('base64')}` },
  form: { grant_type: 'client_credentials' }
})).access_token
const admin = { authorization: `Bearer ${adminToken}` }

// an agent that accepts no secret at all
const agent = await call('POST', '/api/v1/agents', {
  headers: admin,
  json: { email: `secretless-${randomUUID().slice(0, 8)}@example.com`, agentType: 'extractor', version: '1.0.0', capabilities: ['docs:read'], owner: 'demo', deploymentEnv: 'development', authMethods: ['private_key_jwt'] }
})
step('agent registered', { agentId: agent.agentId, authMethods: agent.authMethods })

// its key pair: the private key stays with the agent, the public one is registered
const { privateKey, publicKey } = await generateKeyPair('ES256')
const kid = 'extractor-1'
await call('PUT', `/api/v1/agents/${agent.agentId}/jwks`, { headers: admin, json: { jwks: { keys: [{ ...await exportJWK(publicKey), kid, alg: 'ES256', use: 'sig' }] } } })
step('key registered', { kid })

const ownAssertion = async () => await new SignJWT({ jti: randomUUID() })
  .setProtectedHeader({ alg: 'ES256', kid })
  .setIssuer(agent.agentId).setSubject(agent.agentId).setAudience(issuer).setIssuedAt().setExpirationTime('60s')
  .sign(privateKey)

// 1. private_key_jwt
const byKey = await call('POST', '/api/v1/token', {
  form: { grant_type: 'client_credentials', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: await ownAssertion() }
})
step('private_key_jwt', { token_type: byKey.token_type, scope: byKey.scope, expires_in: byKey.expires_in })

// 2. the jwt-bearer grant with the agent's own assertion
const byGrant = await call('POST', '/api/v1/token', { form: { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: await ownAssertion() } })
step('jwt-bearer (own key)', { scope: byGrant.scope })

// 3. federation: trust a cluster, list the service account as the agent's federated subject
const cluster = await generateKeyPair('RS256')
const clusterIssuer = `https://kubernetes-${randomUUID().slice(0, 8)}.demo.example`
await call('POST', '/api/v1/federation/issuers', {
  headers: admin,
  json: { issuer: clusterIssuer, jwks: { keys: [{ ...await exportJWK(cluster.publicKey), kid: 'sa-key-1', alg: 'RS256', use: 'sig' }] }, audiences: [issuer], algorithms: ['RS256'], maxLifetimeSeconds: 3600 }
})
const serviceAccount = 'system:serviceaccount:payments:extractor'
await call('PATCH', `/api/v1/agents/${agent.agentId}`, {
  headers: admin,
  json: { federatedSubjects: [{ issuer: clusterIssuer, subject: serviceAccount, conditions: { '/kubernetes.io/namespace': 'payments' } }] }
})
step('cluster trusted', { issuer: clusterIssuer, subject: serviceAccount })

// what the kubelet would mount in the pod (a projected token with audience = the issuer)
const projectedToken = await new SignJWT({ 'kubernetes.io': { namespace: 'payments', serviceaccount: { name: 'extractor', uid: randomUUID() }, pod: { name: 'extractor-7c9d', uid: randomUUID() } }, jti: randomUUID() })
  .setProtectedHeader({ alg: 'RS256', kid: 'sa-key-1' })
  .setIssuer(clusterIssuer).setSubject(serviceAccount).setAudience([issuer]).setIssuedAt().setNotBefore(now()).setExpirationTime('1h')
  .sign(cluster.privateKey)
const federated = await call('POST', '/api/v1/token', { form: { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: projectedToken } })
step('jwt-bearer (federated)', { scope: federated.scope })
const asClient = await call('POST', '/api/v1/token', {
  form: { grant_type: 'client_credentials', client_id: agent.agentId, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: projectedToken }
})
step('client_assertion (federated)', { scope: asClient.scope })

const introspection = await call('POST', '/api/v1/token/introspect', { headers: admin, form: { token: asClient.access_token } })
step('introspected', { active: introspection.active, sub: introspection.sub, client_id: introspection.client_id })
