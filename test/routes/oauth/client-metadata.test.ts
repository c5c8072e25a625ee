import { randomUUID } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { build } from '../../helper.js'
import { assertOAuthError, auditRows, bootstrapClient, decodeToken, introspect, sleep } from './support.js'
import { ownAssertion, signingKey, tokenWithAssertion, type SigningKey } from '../../support/assertions.js'
import { json, selfSignedCertificate, startHttpsServer, type TestServer } from '../../support/https-fixture.js'
import { bundledPolicyDir } from '../../../lib/paths.js'
import { uuidV5 } from '../../../lib/uuid.js'

/**
 * Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document): clients outside the
 * registry whose client_id is an https URL, their documents served over https on loopback with a
 * certificate of the test's own CA, their scopes granted per host by a policy written for the test.
 * Hosts are `127.0.0.1:<port>` of separate servers, so that each group of cases has its own
 * per-host fetch budget (10 a minute); `localhost:<port>` is a host the policy does not list.
 */

const certificate = await selfSignedCertificate('IP:127.0.0.1,DNS:localhost')
const directory = await mkdtemp(join(tmpdir(), 'agentidp-cimd-'))
t.teardown(async () => { await rm(directory, { recursive: true, force: true }) })
const caFile = join(directory, 'ca.pem')
await writeFile(caFile, certificate.cert)

const main = await startHttpsServer(certificate) // the valid clients
const broken = await startHttpsServer(certificate) // documents that must be refused
const flood = await startHttpsServer(certificate) // made-up URLs
for (const server of [main, broken, flood]) t.teardown(server.close)
const hostOf = (server: TestServer) => `127.0.0.1:${server.port}`

// the bundled policy, plus scopes for the test's hosts
const policyDir = join(directory, 'policy')
await mkdir(join(policyDir, 'data'), { recursive: true })
const bundled = JSON.parse(await readFile(join(bundledPolicyDir, 'data', 'scopes.json'), 'utf8')) as Record<string, unknown>
const GRANT = ['mcp:read', 'mcp:tools']
await writeFile(join(policyDir, 'data', 'scopes.json'), JSON.stringify({
  ...bundled,
  clientMetadataHosts: { [hostOf(main)]: GRANT, [hostOf(broken)]: GRANT, [hostOf(flood)]: GRANT }
}))

const env = {
  RATE_LIMIT_AUTH_FAILURES_PER_IP: '0',
  RATE_LIMIT_TOKEN_PER_CLIENT: '0',
  REMOTE_FETCH_ALLOW_PRIVATE_NETWORKS: 'true',
  REMOTE_FETCH_CA_FILE: caFile,
  POLICY_DIR: policyDir
}
const app = await build(t, { env })
const other = await build(t, { env, databaseUrl: app.databaseUrl })
const admin = await bootstrapClient(app)
const jsonHeaders = { ...admin.headers, 'content-type': 'application/json' }

/** A document as a client publishes it: the members this server reads. */
function documentOf (url: string, keys: SigningKey[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { client_id: url, client_name: 'Research agent', jwks: { keys: keys.map((key) => key.publicJwk) }, token_endpoint_auth_method: 'private_key_jwt', grant_types: ['client_credentials'], ...extra }
}

/** Serves a document at `path` of `server`; returns its URL. */
function publish (server: TestServer, path: string, body: (url: string) => unknown, headers: Record<string, string> = { 'cache-control': 'max-age=300' }): string {
  const url = `${server.origin}${path}`
  server.routes.set(path, json(body(url), headers))
  return url
}

async function failureReasons (): Promise<string[]> {
  return (await auditRows(app, 'auth.failed')).map((row) => String(row.metadata.reason))
}

async function agent (agentId: string): Promise<Record<string, unknown>> {
  const res = await app.inject({ method: 'GET', url: `/api/v1/agents/${agentId}`, headers: admin.headers })
  return res.json()
}

const key = await signingKey('ES256')
const clientUrl = publish(main, '/clients/research.json', (url) => documentOf(url, [key]))
const shadowId = uuidV5(clientUrl)

t.test('a client identified by its metadata document obtains a token with its host\'s scopes only; its agent is created and audited once', async (t) => {
  const res = await tokenWithAssertion(app, await ownAssertion(clientUrl, key), { scope: 'mcp:read' })
  t.equal(res.statusCode, 200, res.body)
  const { payload } = decodeToken(res.json().access_token)
  t.equal(payload.sub, shadowId, 'sub: the shadow agent, a UUID v5 of the URL')
  t.equal(payload.client_id, shadowId)
  t.equal(payload.scope, 'mcp:read')
  t.equal((await introspect(other, res.json().access_token, admin)).active, true, 'valid on the other instance')

  const all = await tokenWithAssertion(app, await ownAssertion(clientUrl, key))
  t.equal(all.json().scope, GRANT.join(' '), 'no scope asked: the whole grant')
  assertOAuthError(t, await tokenWithAssertion(app, await ownAssertion(clientUrl, key), { scope: 'mcp:read agents:read' }), 400, 'invalid_scope')
  assertOAuthError(t, await tokenWithAssertion(app, await ownAssertion(clientUrl, key), { scope: 'mcp:admin' }), 400, 'invalid_scope')

  const shadow = await agent(shadowId)
  t.match(shadow, {
    agentId: shadowId, clientIdUrl: clientUrl, agentType: 'custom', version: '0.0.0', owner: `cimd:${hostOf(main)}`,
    deploymentEnv: 'production', status: 'active', authMethods: ['private_key_jwt'], capabilities: GRANT
  })
  t.match(shadow.email, /^[0-9a-f]{32}@cimd\.invalid$/)
  const created = await auditRows(app, 'agent.created', { agentId: shadowId })
  t.equal(created.length, 1)
  t.equal(created[0].metadata.clientIdUrl, clientUrl)
  t.equal((await auditRows(app, 'token.issued', { agentId: shadowId })).at(-1)?.metadata.authMethod, 'private_key_jwt')
  const keys = await app.inject({ method: 'GET', url: `/api/v1/agents/${shadowId}/jwks`, headers: admin.headers })
  t.same(keys.json().jwks.keys.map((jwk: { kid: string }) => jwk.kid), [key.kid], 'its keys are the document\'s')
})

t.test('the same client again, on either instance, reuses its agent; client_id, when sent, must be the URL', async (t) => {
  const fetched = main.hits('/clients/research.json')
  for (const instance of [app, other, app]) {
    const res = await tokenWithAssertion(instance, await ownAssertion(clientUrl, key), { client_id: clientUrl })
    t.equal(res.statusCode, 200, res.body)
    t.equal(decodeToken(res.json().access_token).payload.sub, shadowId)
  }
  t.equal(main.hits('/clients/research.json'), fetched + 1, 'the other instance fetched the document once; this one had it cached')
  const { rows } = await app.pg.query('SELECT count(*)::int AS n FROM agents WHERE client_id_url = $1', [clientUrl])
  t.equal(rows[0].n, 1)
  t.equal((await auditRows(app, 'agent.created', { agentId: shadowId })).length, 1, 'created once')
  assertOAuthError(t, await tokenWithAssertion(app, await ownAssertion(clientUrl, key), { client_id: `${clientUrl}?x` }), 401, 'invalid_client')
  assertOAuthError(t, await tokenWithAssertion(app, await ownAssertion(clientUrl, key), { client_id: shadowId }), 401, 'invalid_client')
  t.ok((await failureReasons()).includes('client_id_mismatch'))
})

t.test('a ChatGPT-like document, full of members this server does not use, with its keys at a jwks_uri, works', async (t) => {
  const chatKey = await signingKey('RS256')
  main.routes.set('/chatgpt/jwks.json', json({ keys: [chatKey.publicJwk] }))
  const url = publish(main, '/oauth/chatgpt/client.json', (url) => ({
    client_id: url,
    client_name: 'ChatGPT',
    client_uri: 'https://chatgpt.com',
    logo_uri: 'https://cdn.oaistatic.com/assets/favicon-o20kmmos.svg',
    policy_uri: 'https://openai.com/policies/privacy-policy',
    tos_uri: 'https://openai.com/policies/terms-of-use',
    software_id: 'chatgpt-connectors',
    software_version: '2026.11',
    redirect_uris: ['https://chatgpt.com/connector_platform_oauth_redirect', 'https://chat.openai.com/aip/callback'],
    response_types: ['code'],
    grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
    scope: 'openid profile email offline_access',
    contacts: ['security@openai.com'],
    application_type: 'web',
    id_token_signed_response_alg: 'RS256',
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'RS256',
    jwks_uri: `${main.origin}/chatgpt/jwks.json`,
    post_logout_redirect_uris: [],
    'x-openai-extension': { nested: { deeply: [1, 2, { three: null }] } }
  }))
  const res = await tokenWithAssertion(app, await ownAssertion(url, chatKey), { scope: 'mcp:tools' })
  t.equal(res.statusCode, 200, res.body)
  const shadow = await agent(uuidV5(url))
  t.equal(shadow.clientIdUrl, url)
  const keys = await app.inject({ method: 'GET', url: `/api/v1/agents/${uuidV5(url)}/jwks`, headers: admin.headers })
  t.equal(keys.json().jwksUri, `${main.origin}/chatgpt/jwks.json`)
})

t.test('a host the policy grants nothing: 400 unauthorized_client, audited, nothing fetched nor stored', async (t) => {
  const url = publish(main, '/clients/ungranted.json', (url) => documentOf(url, [key])).replace('127.0.0.1', 'localhost')
  const res = await tokenWithAssertion(app, await ownAssertion(url, key))
  assertOAuthError(t, res, 400, 'unauthorized_client')
  t.ok((await failureReasons()).includes('client_metadata_host_not_granted'))
  t.equal(main.hits('/clients/ungranted.json'), 0, 'the document was not even fetched')
  const { rows } = await app.pg.query('SELECT count(*)::int AS n FROM agents WHERE agent_id = $1 OR client_id_url = $2', [uuidV5(url), url])
  t.equal(rows[0].n, 0, 'no agent')
})

t.test('URLs that can\'t be a client id: a fragment, credentials, http, no path, not canonical — invalid_client', async (t) => {
  const origin = main.origin
  for (const url of [`${clientUrl}#frag`, `https://user:pw@${hostOf(main)}/clients/research.json`, `http://${hostOf(main)}/clients/research.json`, `${origin}/`, `${origin}/clients/./research.json`, 'https://127.0.0.1:443/clients/research.json']) {
    assertOAuthError(t, await tokenWithAssertion(app, await ownAssertion(url, key)), 401, 'invalid_client')
  }
  t.equal((await failureReasons()).filter((reason) => reason === 'client_metadata_url_invalid').length, 6)
})

t.test('with REMOTE_FETCH_ALLOW_PRIVATE_NETWORKS off, a document on a private address is never fetched', async (t) => {
  const strict = await build(t, { env: { ...env, REMOTE_FETCH_ALLOW_PRIVATE_NETWORKS: 'false' } })
  const url = publish(main, '/clients/private.json', (url) => documentOf(url, [key]))
  assertOAuthError(t, await tokenWithAssertion(strict, await ownAssertion(url, key)), 401, 'invalid_client')
  t.equal(main.hits('/clients/private.json'), 0)
  const reasons = (await auditRows(strict, 'auth.failed')).map((row) => row.metadata.reason)
  t.same(reasons, ['client_metadata_unavailable'])
})

t.test('documents refused in bounded time: oversized, slow, not JSON, not an object, another client_id, no keys, another auth method', async (t) => {
  const newKey = await signingKey('ES256')
  const cases: Array<[string, string, string]> = [
    ['oversized', publish(broken, '/oversized.json', (url) => documentOf(url, [newKey], { padding: 'x'.repeat(70 * 1024) })), 'client_metadata_invalid'],
    ['not JSON', publish(broken, '/not-json.json', () => '<html>hello</html>'), 'client_metadata_invalid'],
    ['not an object', publish(broken, '/array.json', (url) => [url]), 'client_metadata_invalid'],
    ['another client_id', publish(broken, '/mismatch.json', () => documentOf(`${broken.origin}/someone-else.json`, [newKey])), 'client_metadata_invalid'],
    ['no keys', publish(broken, '/no-keys.json', (url) => ({ client_id: url, client_name: 'keyless' })), 'client_metadata_invalid'],
    ['auth method none', publish(broken, '/public-client.json', (url) => documentOf(url, [newKey], { token_endpoint_auth_method: 'none' })), 'client_metadata_invalid'],
    ['not found', `${broken.origin}/missing.json`, 'client_metadata_unavailable']
  ]
  broken.routes.set('/slow.json', (_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' })
    response.write('{"client_id": ') // and never another byte
  })
  cases.push(['slow', `${broken.origin}/slow.json`, 'client_metadata_unavailable'])
  for (const [name, url, reason] of cases) {
    const started = Date.now()
    assertOAuthError(t, await tokenWithAssertion(app, await ownAssertion(url, newKey)), 401, 'invalid_client')
    t.ok(Date.now() - started < 10_000, `${name}: answered in ${Date.now() - started} ms`)
    t.equal((await auditRows(app, 'auth.failed')).at(-1)?.metadata.reason, reason, `${name}: ${reason}`)
    const { rows } = await app.pg.query('SELECT count(*)::int AS n FROM agents WHERE client_id_url = $1', [url])
    t.equal(rows[0].n, 0, `${name}: no agent`)
  }
})

t.test('made-up URLs under one host: at most 10 fetches a minute per host, the rest refused without a request', async (t) => {
  const paths = Array.from({ length: 14 }, () => `/made-up/${randomUUID()}.json`)
  for (const path of paths) {
    assertOAuthError(t, await tokenWithAssertion(app, await ownAssertion(`${flood.origin}${path}`, key)), 401, 'invalid_client')
  }
  t.equal(paths.reduce((sum, path) => sum + flood.hits(path), 0), 10, 'the host saw 10 requests')
  const reasons = (await failureReasons()).slice(-14)
  t.equal(reasons.filter((reason) => reason === 'client_metadata_unavailable').length, 10)
  t.equal(reasons.filter((reason) => reason === 'client_metadata_rate_limited').length, 4)
  // other hosts are not affected
  t.equal((await tokenWithAssertion(app, await ownAssertion(clientUrl, key))).statusCode, 200)
})

t.test('a key removed from the document revokes the tokens it obtained, once the document is read anew (an unknown kid refetches it)', async (t) => {
  const first = await signingKey('ES256')
  const second = await signingKey('EdDSA')
  let keys = [first]
  const path = '/clients/rotating.json'
  const url = `${main.origin}${path}`
  main.routes.set(path, (_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=3600' }).end(JSON.stringify(documentOf(url, keys)))
  })
  const before = await tokenWithAssertion(app, await ownAssertion(url, first))
  t.equal(before.statusCode, 200, before.body)
  const token = before.json().access_token
  keys = [second]
  // the document was fetched moments ago: an unknown kid refetches it once the 10 s cooldown is over
  await sleep(10_500)
  const after = await tokenWithAssertion(app, await ownAssertion(url, second))
  t.equal(after.statusCode, 200, after.body)
  t.equal(main.hits(path), 2, 'fetched anew once')
  t.same(await introspect(other, token, admin), { active: false }, 'the removed key\'s token is dead on the other instance')
  t.equal((await introspect(other, after.json().access_token, admin)).active, true, 'the new key\'s token lives')
  assertOAuthError(t, await tokenWithAssertion(app, await ownAssertion(url, first)), 401, 'invalid_client')
  const updated = (await auditRows(app, 'agent.keys_updated', { agentId: uuidV5(url) })).at(-1)
  t.equal(updated?.metadata.clientIdUrl, url)
  t.equal((updated?.metadata.revokedCredentials as string[]).length, 1)
})

t.test('an operator cuts a client off by suspending its agent: its tokens die and it is refused unauthorized_client', async (t) => {
  const token = (await tokenWithAssertion(app, await ownAssertion(clientUrl, key))).json().access_token
  const suspended = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${shadowId}`, headers: jsonHeaders, payload: { status: 'suspended' } })
  t.equal(suspended.statusCode, 200, suspended.body)
  t.same(await introspect(other, token, admin), { active: false })
  for (const instance of [app, other]) {
    assertOAuthError(t, await tokenWithAssertion(instance, await ownAssertion(clientUrl, key)), 400, 'unauthorized_client')
  }
  t.equal((await agent(shadowId)).status, 'suspended', 'authenticating does not bring it back')
  const reactivated = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${shadowId}`, headers: jsonHeaders, payload: { status: 'active' } })
  t.equal(reactivated.statusCode, 200)
  t.equal((await tokenWithAssertion(app, await ownAssertion(clientUrl, key))).statusCode, 200, 'reactivated, it works again')
})

t.test('the grant is re-read at each authentication: capabilities an operator narrows by hand come back to the host\'s grant', async (t) => {
  const narrowed = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${shadowId}`, headers: jsonHeaders, payload: { capabilities: ['mcp:read'] } })
  t.equal(narrowed.statusCode, 200, narrowed.body)
  const res = await tokenWithAssertion(app, await ownAssertion(clientUrl, key))
  t.equal(res.json().scope, GRANT.join(' '))
  t.same((await agent(shadowId)).capabilities, GRANT)
  t.ok((await auditRows(app, 'agent.updated', { agentId: shadowId })).some((row) => row.metadata.via === 'client_metadata'))
})
