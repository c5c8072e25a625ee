import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import t from 'tap'
import { createLocalJWKSet, jwtVerify, SignJWT } from 'jose'
import type { TestApp } from '../../helper.js'
import { build, createSchema, ISSUER, seedAdmin, testKeys } from '../../helper.js'
import { accessToken, decodeToken, introspect, JWKS, registerClient, type Client } from './support.js'

/**
 * JWT_ALG (issue 18, item 4): ES256 and EdDSA as the signing algorithm, RS256 still the default.
 * A server signs with its key's algorithm, publishes every key of its ring with its own `alg`,
 * and verifies each key only with that algorithm — so a change of algorithm is a rotation: the
 * old RSA key, kept as an additional public key, keeps verifying the tokens it signed.
 */

function pemPair (type: 'ec' | 'ed25519') {
  const { privateKey, publicKey } = type === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519')
  return {
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString()
  }
}

const oneLine = (pem: string) => pem.trim().replace(/\n/g, '\\n')

async function jwksOf (app: TestApp) {
  const res = await app.inject({ method: 'GET', url: JWKS })
  return res.json() as { keys: Array<Record<string, string>> }
}

async function badAlgorithmFailures (app: TestApp): Promise<number> {
  const { rows } = await app.pg.query<{ count: number }>(
    "SELECT count(*)::int AS count FROM audit_events WHERE action = 'auth.failed' AND metadata->>'reason' = 'bad_algorithm'")
  return rows[0].count
}

async function readSelf (app: TestApp, client: Client, token: string) {
  return await app.inject({ method: 'GET', url: `/api/v1/agents/${client.agentId}`, headers: { authorization: `Bearer ${token}` } })
}

for (const [alg, type, members] of [['ES256', 'ec', ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']], ['EdDSA', 'ed25519', ['alg', 'crv', 'kid', 'kty', 'use', 'x']]] as const) {
  t.test(`JWT_ALG=${alg}: a client_credentials token is signed ${alg}, verifies against the published JWKS and is accepted by the management API`, async (t) => {
    const keys = pemPair(type)
    const app = await build(t, { env: { JWT_ALG: alg, JWT_PRIVATE_KEY: keys.privateKey, JWT_PUBLIC_KEY: keys.publicKey } })
    const admin = await seedAdmin(app)
    const client = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })

    const token = await accessToken(app, client)
    const jwks = await jwksOf(app)
    t.same(decodeToken(token).header, { alg, typ: 'at+jwt', kid: app.keys.currentKid }, `the header says ${alg}`)
    t.equal(jwks.keys.length, 1)
    t.same(Object.keys(jwks.keys[0]).sort(), members, 'the public members of its key type only')
    t.match(jwks.keys[0], { alg, kid: app.keys.currentKid, use: 'sig', kty: type === 'ec' ? 'EC' : 'OKP', crv: type === 'ec' ? 'P-256' : 'Ed25519' })

    const verified = await jwtVerify(token, createLocalJWKSet(jwks as never), { issuer: ISSUER, audience: ISSUER, typ: 'at+jwt', algorithms: [alg] })
    t.equal(verified.payload.sub, client.agentId, 'the JWKS verifies it')
    if (alg === 'ES256') t.equal(Buffer.from(token.split('.')[2], 'base64url').length, 64, 'an ES256 signature is r ‖ s, 64 bytes (not DER)')

    const self = await readSelf(app, client, token)
    t.equal(self.statusCode, 200, self.body)
    t.equal((await introspect(app, token, admin)).active, true, 'introspection finds it active')
  })
}

t.test('a switch from RS256 to ES256 with the old RSA key as an additional key: old tokens still pass, both keys are published', async (t) => {
  const { databaseUrl } = await createSchema(t)
  // the old configuration: RS256 (the default) with the test RSA pair
  const before = await build(t, { databaseUrl })
  const admin = await seedAdmin(before)
  const client = await registerClient(before, admin.headers, { capabilities: ['docs:read'] })
  const oldToken = await accessToken(before, client)
  t.equal(decodeToken(oldToken).header.alg, 'RS256')
  const oldKid = before.keys.currentKid

  const ec = pemPair('ec')
  const after = await build(t, {
    databaseUrl,
    env: { JWT_ALG: 'ES256', JWT_PRIVATE_KEY: oneLine(ec.privateKey), JWT_PUBLIC_KEY: oneLine(ec.publicKey), JWT_ADDITIONAL_PUBLIC_KEYS: oneLine(testKeys.publicKey) }
  })
  const jwks = await jwksOf(after)
  t.same(jwks.keys.map((key) => [key.kid, key.kty, key.alg]), [[after.keys.currentKid, 'EC', 'ES256'], [oldKid, 'RSA', 'RS256']],
    'the JWKS publishes the new EC key and the old RSA key, each with its own alg')

  const self = await readSelf(after, client, oldToken)
  t.equal(self.statusCode, 200, `the RS256 token of the old configuration is accepted: ${self.body}`)
  t.equal((await introspect(after, oldToken, admin)).active, true, 'and introspected as active')
  await t.resolves(jwtVerify(oldToken, createLocalJWKSet(jwks as never), { issuer: ISSUER, audience: ISSUER }), 'and verifies against the new JWKS')

  const newToken = await accessToken(after, client)
  t.same(decodeToken(newToken).header, { alg: 'ES256', typ: 'at+jwt', kid: after.keys.currentKid }, 'new tokens are ES256 under the EC key')
  t.equal((await readSelf(after, client, newToken)).statusCode, 200)
  await t.resolves(jwtVerify(newToken, createLocalJWKSet(jwks as never), { issuer: ISSUER, audience: ISSUER, algorithms: ['ES256'] }))
})

t.test('the kid binds the algorithm: an RS256 header on the EC key\'s kid, or ES256 on the RSA kid, is refused', async (t) => {
  const ec = pemPair('ec')
  const app = await build(t, { env: { JWT_ALG: 'ES256', JWT_PRIVATE_KEY: ec.privateKey, JWT_PUBLIC_KEY: ec.publicKey, JWT_ADDITIONAL_PUBLIC_KEYS: testKeys.publicKey } })
  const admin = await seedAdmin(app)
  const client = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })
  const [ecKid, rsaKid] = (await jwksOf(app)).keys.map((key) => key.kid)
  const claims = decodeToken(await accessToken(app, client)).payload
  const signed = async (alg: string, kid: string, key: KeyObject) =>
    await new SignJWT(claims).setProtectedHeader({ alg, typ: 'at+jwt', kid }).sign(key)
  const rsaKey = createPrivateKey(testKeys.privateKey)
  const ecKey = createPrivateKey(ec.privateKey)

  t.equal((await readSelf(app, client, await signed('RS256', rsaKid, rsaKey))).statusCode, 200, 'control: RS256 on the RSA kid passes')
  for (const [label, token] of [
    ['RS256 signed by the RSA key, under the EC kid', await signed('RS256', ecKid, rsaKey)],
    ['ES256 signed by the EC key, under the RSA kid', await signed('ES256', rsaKid, ecKey)]
  ] as const) {
    const before = await badAlgorithmFailures(app)
    const res = await readSelf(app, client, token)
    t.equal(res.statusCode, 401, `${label}: refused`)
    t.equal(await badAlgorithmFailures(app) - before, 1, `${label}: audited as auth.failed, reason bad_algorithm`)
  }
})
