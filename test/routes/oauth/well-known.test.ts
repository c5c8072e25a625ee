import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { bundledPolicyDir } from '../../../lib/paths.js'
import { createPublicKey, generateKeyPairSync, randomUUID } from 'node:crypto'
import t from 'tap'
import { calculateJwkThumbprint, exportJWK, jwtVerify, SignJWT } from 'jose'
import type { TestApp } from '../../helper.js'
import { build, ISSUER, PLATFORM_SCOPES, RESOURCE_METADATA, seedAdmin, testKeys, tokenIdFor } from '../../helper.js'
import { DPOP_ALGORITHMS } from '../../../lib/protected-resource.js'
import { accessToken, decodeToken, introspect, JWKS, METADATA, registerClient, type Client } from './support.js'

const PUBLIC_MEMBERS = ['alg', 'e', 'kid', 'kty', 'n', 'use']
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'oth']

function rsaPair () {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return { privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() }
}

async function kidOf (publicPem: string): Promise<string> {
  const jwk = await exportJWK(createPublicKey(publicPem))
  return await calculateJwkThumbprint({ kty: jwk.kty, e: jwk.e, n: jwk.n }, 'sha256')
}

/** Resolves a URL of the metadata against the app: GET for documents, POST for the OAuth endpoints. */
async function resolve (app: TestApp, field: string, url: string) {
  const path = new URL(url).pathname
  return field.endsWith('_endpoint')
    ? await app.inject({ method: 'POST', url: path, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: '' })
    : await app.inject({ method: 'GET', url: path })
}

const app = await build(t)

t.test('JWKS', async (t) => {
  const res = await app.inject({ method: 'GET', url: JWKS })

  t.test('publishes only the public members kty, n, e, kid, alg, use of the signing key', async (t) => {
    t.equal(res.statusCode, 200, res.body)
    const { keys } = res.json()
    t.equal(keys.length, 1)
    t.same(Object.keys(keys[0]).sort(), PUBLIC_MEMBERS)
    for (const member of PRIVATE_MEMBERS) t.notOk(member in keys[0], `no ${member}`)
    t.match(keys[0], { kty: 'RSA', alg: 'RS256', use: 'sig', kid: app.keys.currentKid })
    const published = createPublicKey({ key: keys[0], format: 'jwk' })
    t.equal(published.export({ type: 'spki', format: 'pem' }).toString().trim(), testKeys.publicKey.trim(), 'it is the configured public key')
  })

  t.test('is cacheable: Cache-Control public, max-age=300', async (t) => {
    t.equal(res.headers['cache-control'], 'public, max-age=300')
  })
})

t.test('JWT_ADDITIONAL_PUBLIC_KEYS: published and accepted, while new tokens are signed with the current key only', async (t) => {
  const next = rsaPair()
  const previous = rsaPair()
  // one PEM with literal "\n" sequences (as orchestrators deliver them), one with real newlines
  const rotating = await build(t, { env: { JWT_ADDITIONAL_PUBLIC_KEYS: `${next.publicPem.trim().replace(/\n/g, '\\n')}\n${previous.publicPem}` } })
  const admin = await seedAdmin(rotating)
  const client: Client = await registerClient(rotating, admin.headers, { capabilities: ['docs:read', 'agents:read'] })
  const nextKid = await kidOf(next.publicPem)
  const previousKid = await kidOf(previous.publicPem)
  const currentKid = await kidOf(testKeys.publicKey)

  const jwks = (await rotating.inject({ method: 'GET', url: JWKS })).json()
  t.same(jwks.keys.map((key: { kid: string }) => key.kid).sort(), [currentKid, nextKid, previousKid].sort(), 'every kid is published')
  for (const key of jwks.keys) {
    t.same(Object.keys(key).sort(), PUBLIC_MEMBERS, `${key.kid as string}: public members only`)
  }

  /** An access token for `client` signed by another key of the ring, its jti naming a credential of the client. */
  async function signedBy (privateKey: ReturnType<typeof rsaPair>['privateKey'], kid: string): Promise<string> {
    const now = Math.floor(Date.now() / 1000)
    const claims = { iss: ISSUER, sub: client.agentId, client_id: client.agentId, aud: ISSUER, iat: now, exp: now + 3600, jti: await tokenIdFor(rotating, client.agentId), scope: 'docs:read agents:read' }
    return await new SignJWT(claims).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid }).sign(privateKey)
  }

  for (const [label, pair, kid] of [['next', next, nextKid], ['previous', previous, previousKid]] as const) {
    const token = await signedBy(pair.privateKey, kid)
    const management = await rotating.inject({ method: 'GET', url: `/api/v1/agents/${client.agentId}`, headers: { authorization: `Bearer ${token}` } })
    t.equal(management.statusCode, 200, `a token signed by the ${label} key is accepted by the management API: ${management.body}`)
    const intro = await introspect(rotating, token, admin)
    t.equal(intro.active, true, `and is active for introspection (${label})`)
  }

  const issued = await accessToken(rotating, client)
  t.equal(decodeToken(issued).header.kid, currentKid, 'new tokens name the current key')
  await t.resolves(jwtVerify(issued, createPublicKey(testKeys.publicKey)), 'and are signed by it')
  await t.rejects(jwtVerify(issued, createPublicKey(next.publicPem)), 'not by the next key')
  await t.rejects(jwtVerify(issued, createPublicKey(previous.publicPem)), 'nor by the previous key')
})

t.test('a token signed by an unpublished key is refused even when it names a published kid', async (t) => {
  const admin = await seedAdmin(app)
  const stranger = rsaPair()
  const now = Math.floor(Date.now() / 1000)
  const token = await new SignJWT({ iss: ISSUER, sub: admin.agent.agentId, client_id: admin.agent.agentId, aud: ISSUER, iat: now, exp: now + 3600, jti: randomUUID(), scope: PLATFORM_SCOPES.join(' ') })
    .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: app.keys.currentKid }).sign(stranger.privateKey)
  const res = await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${token}` } })
  t.equal(res.statusCode, 401, res.body)
})

t.test('RFC 8414 metadata', async (t) => {
  const res = await app.inject({ method: 'GET', url: METADATA })
  t.equal(res.statusCode, 200, res.body)
  const metadata = res.json()

  t.test('issuer is ISSUER_URL exactly and the required members are present', async (t) => {
    t.equal(metadata.issuer, ISSUER)
    t.match(metadata, {
      token_endpoint: `${ISSUER}/api/v1/token`,
      introspection_endpoint: `${ISSUER}/api/v1/token/introspect`,
      revocation_endpoint: `${ISSUER}/api/v1/token/revoke`,
      jwks_uri: String
    })
    t.same(metadata.grant_types_supported, ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange', 'urn:ietf:params:oauth:grant-type:jwt-bearer'])
    t.same(metadata.token_exchange_token_types_supported, ['urn:ietf:params:oauth:token-type:access_token'])
    t.same([...metadata.token_endpoint_auth_methods_supported].sort(), ['client_secret_basic', 'client_secret_post', 'private_key_jwt'])
    // what an agent's own keys may sign with; nothing the server does not verify
    t.same(metadata.token_endpoint_auth_signing_alg_values_supported, ['RS256', 'ES256', 'EdDSA', 'Ed25519'])
    t.same(metadata.dpop_signing_alg_values_supported, ['RS256', 'ES256', 'EdDSA', 'Ed25519', 'PS256'], 'RFC 9449: the proof algorithms verified')
    for (const endpoint of ['introspection', 'revocation']) {
      t.same(metadata[`${endpoint}_endpoint_auth_methods_supported`], ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'bearer'])
      t.same(metadata[`${endpoint}_endpoint_auth_signing_alg_values_supported`], ['RS256', 'ES256', 'EdDSA', 'Ed25519'])
    }
    t.same(metadata.response_types_supported, [])
    t.equal(metadata.client_id_metadata_document_supported, true, 'client ID metadata documents (plugins/client-metadata.ts)')
    for (const scope of PLATFORM_SCOPES) t.ok(metadata.scopes_supported.includes(scope), `scopes_supported has ${scope}`)
  })

  t.test('every URL in it resolves on this server', async (t) => {
    const urls = Object.entries(metadata).filter(([field, value]) => field !== 'issuer' && typeof value === 'string' && /^https?:\/\//.test(value)) as Array<[string, string]>
    t.ok(urls.length >= 4, `URLs found: ${urls.map(([field]) => field).join(', ')}`)
    for (const [field, url] of urls) {
      t.ok(url.startsWith(`${ISSUER}/`), `${field} is under the issuer`)
      const answer = await resolve(app, field, url)
      if (field.endsWith('_endpoint')) {
        t.ok([400, 401].includes(answer.statusCode), `${field} answers an empty POST with an OAuth error, got ${answer.statusCode}`)
        t.type(answer.json().error, 'string', `${field} is an OAuth endpoint`)
      } else {
        t.ok(answer.statusCode >= 200 && answer.statusCode < 400, `${field} ${url} resolves: ${answer.statusCode}`)
      }
    }
  })

  t.test('jwks_uri serves the JWKS', async (t) => {
    const jwks = await app.inject({ method: 'GET', url: new URL(metadata.jwks_uri).pathname })
    t.same(jwks.json(), (await app.inject({ method: 'GET', url: JWKS })).json())
  })
})

t.test('with ISSUER_URL=http://idp.test/tenant-a the metadata is served at /.well-known/oauth-authorization-server/tenant-a (RFC 8414 §3)', async (t) => {
  const issuer = 'http://idp.test/tenant-a'
  const tenant = await build(t, { env: { ISSUER_URL: issuer } })
  const res = await tenant.inject({ method: 'GET', url: `${METADATA}/tenant-a` })
  t.equal(res.statusCode, 200, res.body)
  const metadata = res.json()
  t.equal(metadata.issuer, issuer)
  for (const field of ['token_endpoint', 'jwks_uri', 'introspection_endpoint', 'revocation_endpoint']) {
    t.ok((metadata[field] as string).startsWith(`${issuer}/`), `${field} is under the issuer: ${metadata[field] as string}`)
  }

  t.test('and every URL in it resolves on this server at its path', async (t) => {
    for (const field of ['token_endpoint', 'jwks_uri', 'introspection_endpoint', 'revocation_endpoint']) {
      const answer = await resolve(tenant, field, metadata[field])
      t.not(answer.statusCode, 404, `${field} ${new URL(metadata[field]).pathname}: ${answer.statusCode}`)
    }
  })
})

t.test('RFC 9728 protected resource metadata', async (t) => {
  const res = await app.inject({ method: 'GET', url: '/.well-known/oauth-protected-resource' })
  t.equal(res.statusCode, 200, res.body)
  const metadata = res.json()

  t.test('describes the management API: the issuer is its resource and its authorization server', async (t) => {
    t.same(metadata, {
      resource: ISSUER,
      authorization_servers: [ISSUER],
      scopes_supported: [...PLATFORM_SCOPES],
      bearer_methods_supported: ['header'],
      resource_name: 'AgentIdP management API',
      resource_documentation: `${ISSUER}/docs`,
      dpop_signing_alg_values_supported: [...DPOP_ALGORITHMS],
      dpop_bound_access_tokens_required: false
    })
    t.same(DPOP_ALGORITHMS, ['RS256', 'ES256', 'EdDSA', 'Ed25519', 'PS256'])
  })

  t.test('is public and cacheable like the other discovery documents', async (t) => {
    t.equal(res.headers['cache-control'], 'public, max-age=300')
    t.match(res.headers['content-type'], /^application\/json/)
  })

  t.test('every URL in it resolves on this server', async (t) => {
    const docs = await resolve(app, 'resource_documentation', metadata.resource_documentation)
    t.ok(docs.statusCode >= 200 && docs.statusCode < 400, `resource_documentation resolves: ${docs.statusCode}`)
    for (const server of metadata.authorization_servers as string[]) {
      // an authorization server is found through its RFC 8414 metadata
      const found = await app.inject({ method: 'GET', url: `/.well-known/oauth-authorization-server${new URL(server).pathname.replace(/\/+$/, '')}` })
      t.equal(found.statusCode, 200, `${server} has its metadata`)
      t.equal(found.json().issuer, server)
    }
  })

  t.test('a 401 of the management API names it in resource_metadata (RFC 9728 §5.1), with or without a token', async (t) => {
    const none = await app.inject({ method: 'GET', url: '/api/v1/agents' })
    t.equal(none.statusCode, 401)
    t.equal(none.headers['www-authenticate'], `Bearer resource_metadata="${RESOURCE_METADATA}"`)
    const bad = await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: 'Bearer not.a.token' } })
    t.equal(bad.statusCode, 401)
    t.match(bad.headers['www-authenticate'], /^Bearer error="invalid_token", error_description="[^"]*", resource_metadata="([^"]+)"$/)
    const named = /resource_metadata="([^"]+)"/.exec(String(bad.headers['www-authenticate']))?.[1] as string
    t.equal(named, RESOURCE_METADATA)
    t.same((await app.inject({ method: 'GET', url: new URL(named).pathname })).json(), metadata, 'the URL it names serves the document')
  })

  t.test('without DOCS_ENABLED there is no resource_documentation', async (t) => {
    const quiet = await build(t, { env: { DOCS_ENABLED: 'false' } })
    const document = (await quiet.inject({ method: 'GET', url: '/.well-known/oauth-protected-resource' })).json()
    t.notOk('resource_documentation' in document)
  })
})

t.test('with ISSUER_URL=http://idp.test/tenant-a the protected resource metadata is served at the issuer\'s path and RFC 9728 §3.1\'s', async (t) => {
  const issuer = 'http://idp.test/tenant-a'
  const tenant = await build(t, { env: { ISSUER_URL: issuer } })
  for (const url of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/tenant-a']) {
    const res = await tenant.inject({ method: 'GET', url })
    t.equal(res.statusCode, 200, `${url}: ${res.body}`)
    t.match(res.json(), { resource: issuer, authorization_servers: [issuer], resource_documentation: `${issuer}/docs` })
    t.equal(res.headers['cache-control'], 'public, max-age=300')
  }
  const none = await tenant.inject({ method: 'GET', url: '/api/v1/agents' })
  t.equal(none.headers['www-authenticate'], `Bearer resource_metadata="${issuer}/.well-known/oauth-protected-resource"`, 'the challenge names the issuer\'s URL')
})

t.test('the metadata publishes the platform scopes of the policy the server loaded, also from a custom POLICY_DIR', async (t) => {
  const policy = JSON.parse(await readFile(join(bundledPolicyDir, 'data', 'scopes.json'), 'utf8')) as { platformScopes: string[] }
  const dir = await mkdtemp(join(tmpdir(), 'agentidp-policy-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await mkdir(join(dir, 'data'))
  await writeFile(join(dir, 'data', 'scopes.json'), JSON.stringify({ ...policy, platformScopes: [...policy.platformScopes, 'reports:read'] }))
  const app = await build(t, { env: { POLICY_DIR: dir } })

  const metadata = (await app.inject({ method: 'GET', url: '/.well-known/oauth-authorization-server' })).json()

  t.same(metadata.scopes_supported, [...policy.platformScopes, 'reports:read'])
  t.same(app.policy.platformScopes, metadata.scopes_supported, 'one list: the policy plugin\'s')
  const resource = (await app.inject({ method: 'GET', url: '/.well-known/oauth-protected-resource' })).json()
  t.same(resource.scopes_supported, metadata.scopes_supported, 'the protected resource metadata lists the same')
})
