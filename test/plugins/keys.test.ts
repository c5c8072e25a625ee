import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import t from 'tap'
import { calculateJwkThumbprint, createLocalJWKSet, decodeProtectedHeader, exportJWK, jwtVerify, SignJWT } from 'jose'
import { createKeyRing } from '../../plugins/keys.js'
import { UnknownKeyError } from '../../lib/errors.js'
import { testKeys } from '../helper.js'

const expect = { issuer: 'http://idp.test', audience: 'http://idp.test' }
const claims = () => {
  const now = Math.floor(Date.now() / 1000)
  return { iss: expect.issuer, aud: expect.audience, sub: 's', jti: 'j', iat: now, exp: now + 60 }
}

t.test('the kid is the RFC 7638 SHA-256 thumbprint of the public key', async (t) => {
  const ring = await createKeyRing(testKeys.privateKey)
  const jwk = await exportJWK(createPublicKey(testKeys.publicKey))
  t.equal(ring.currentKid, await calculateJwkThumbprint(jwk, 'sha256'))
})

t.test('tokens are signed with the current key only and carry typ at+jwt', async (t) => {
  const next = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const ring = await createKeyRing(testKeys.privateKey, [next])
  const header = decodeProtectedHeader(await ring.sign(claims()))
  t.same(header, { alg: 'RS256', typ: 'at+jwt', kid: ring.currentKid })
  t.equal(ring.jwks().keys.length, 2)
})

t.test('a signed token verifies with jose against the published JWKS and keeps every claim as given', async (t) => {
  const ring = await createKeyRing(testKeys.privateKey)
  const given = { ...claims(), scope: 'agents:read audit:read', client_id: 'é ünïcode' }
  const token = await ring.sign(given)
  t.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'three base64url segments, no padding')
  const { payload, protectedHeader } = await jwtVerify(token, createLocalJWKSet(ring.jwks()), {
    algorithms: ['RS256'], typ: 'at+jwt', issuer: expect.issuer, audience: expect.audience
  })
  t.same(payload, given)
  t.same(protectedHeader, { alg: 'RS256', typ: 'at+jwt', kid: ring.currentKid })
})

t.test('the JWKS holds public members only', async (t) => {
  const ring = await createKeyRing(testKeys.privateKey)
  for (const key of ring.jwks().keys) {
    t.same(Object.keys(key).sort(), ['alg', 'e', 'kid', 'kty', 'n', 'use'])
  }
})

const pemsOf = (pair: { privateKey: KeyObject, publicKey: KeyObject }) => ({
  privateKey: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  publicKey: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString()
})
const ec = pemsOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }))
const ed = pemsOf(generateKeyPairSync('ed25519'))

for (const [alg, pair, kty, members] of [
  ['ES256', ec, 'EC', ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']],
  ['EdDSA', ed, 'OKP', ['alg', 'crv', 'kid', 'kty', 'use', 'x']]
] as const) {
  t.test(`an ${kty} key signs ${alg}: the header says so, jose verifies it against the JWKS, the kid is its RFC 7638 thumbprint`, async (t) => {
    const ring = await createKeyRing(pair.privateKey)
    t.equal(ring.currentAlg, alg)
    t.same(ring.algorithms, [alg])
    const token = await ring.sign(claims())
    t.same(decodeProtectedHeader(token), { alg, typ: 'at+jwt', kid: ring.currentKid })
    const { protectedHeader } = await jwtVerify(token, createLocalJWKSet(ring.jwks()), { algorithms: [alg], typ: 'at+jwt', ...expect })
    t.equal(protectedHeader.alg, alg)
    t.equal((await ring.verify(token, expect)).payload.sub, 's', 'and so does the ring')
    t.equal(ring.currentKid, await calculateJwkThumbprint(await exportJWK(createPublicKey(pair.publicKey)), 'sha256'))
    t.same(Object.keys(ring.jwks().keys[0]).sort(), members, 'public members of its type only')
  })
}

t.test('a ring of mixed types verifies each key with its own algorithm only and publishes each with its own alg', async (t) => {
  const ring = await createKeyRing(ec.privateKey, [testKeys.publicKey, ed.publicKey])
  t.equal(ring.currentAlg, 'ES256', 'signs with the current key\'s algorithm')
  t.same(ring.algorithms, ['ES256', 'RS256', 'EdDSA'])
  t.same(ring.jwks().keys.map((key) => [key.kty, key.alg]), [['EC', 'ES256'], ['RSA', 'RS256'], ['OKP', 'EdDSA']])
  const [ecKid, rsaKid, edKid] = ring.jwks().keys.map((key) => key.kid)
  const signWith = async (alg: string, kid: string, pem: string) =>
    await new SignJWT(claims()).setProtectedHeader({ alg, typ: 'at+jwt', kid }).sign(createPrivateKey(pem))

  t.equal((await ring.verify(await signWith('RS256', rsaKid, testKeys.privateKey), expect)).payload.sub, 's', 'the RSA key verifies RS256')
  t.equal((await ring.verify(await signWith('EdDSA', edKid, ed.privateKey), expect)).payload.sub, 's', 'the Ed25519 key verifies EdDSA')
  await t.rejects(ring.verify(await signWith('RS256', ecKid, testKeys.privateKey), expect), { code: 'ERR_JOSE_ALG_NOT_ALLOWED' }, 'RS256 under the EC kid')
  await t.rejects(ring.verify(await signWith('ES256', rsaKid, ec.privateKey), expect), { code: 'ERR_JOSE_ALG_NOT_ALLOWED' }, 'ES256 under the RSA kid')
  await t.rejects(ring.verify(await signWith('Ed25519', edKid, ed.privateKey), expect), { code: 'ERR_JOSE_ALG_NOT_ALLOWED' }, 'only the name it is published with')
})

t.test('a key of no signing type is refused by the ring too', async (t) => {
  const p384 = pemsOf(generateKeyPairSync('ec', { namedCurve: 'P-384' }))
  await t.rejects(createKeyRing(p384.privateKey), TypeError)
  await t.rejects(createKeyRing(testKeys.privateKey, [p384.publicKey]), TypeError)
})

t.test('a token signed by an additional (previous or next) key verifies; one by a stranger does not', async (t) => {
  const previous = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const ring = await createKeyRing(testKeys.privateKey, [previous.publicKey.export({ type: 'spki', format: 'pem' }).toString()])
  const signWith = async (key: typeof previous) => {
    const kid = await calculateJwkThumbprint(await exportJWK(key.publicKey), 'sha256')
    return await new SignJWT(claims()).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid }).sign(key.privateKey)
  }
  t.equal((await ring.verify(await signWith(previous), expect)).payload.sub, 's')
  await t.rejects(ring.verify(await signWith(stranger), expect), UnknownKeyError)
})

t.test('the algorithm is bound to the key: HS256 with the public key as secret is refused', async (t) => {
  const ring = await createKeyRing(testKeys.privateKey)
  const forged = await new SignJWT(claims())
    .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: ring.currentKid })
    .sign(new TextEncoder().encode(testKeys.publicKey))
  await t.rejects(ring.verify(forged, expect), { code: 'ERR_JOSE_ALG_NOT_ALLOWED' })
})

t.test('a verified token is remembered until it expires: the same string verifies again, a changed one is checked in full', async (t) => {
  const ring = await createKeyRing(testKeys.privateKey)
  const now = Math.floor(Date.now() / 1000)
  // expired by the clock but within the 30 s tolerance for a few more seconds
  const token = await ring.sign({ ...claims(), exp: now - 25 })
  const first = await ring.verify(token, expect)
  t.equal(await ring.verify(token, expect), first, 'the second verification is the remembered result')

  const [header, payload, signature] = token.split('.')
  const flipped = `${header}.${payload}.${signature.slice(0, -2)}${signature.endsWith('AA') ? 'BA' : 'AA'}`
  await t.rejects(ring.verify(flipped, expect), { code: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' }, 'another signature is verified, not looked up')
  await t.rejects(ring.verify(token, { ...expect, audience: 'https://elsewhere.example' }), { code: 'ERR_JWT_CLAIM_VALIDATION_FAILED' },
    'another expected audience is checked in full')

  // once past the tolerance, the remembered result is not served: jose says expired
  while (Math.floor(Date.now() / 1000) <= now - 25 + 30) await new Promise((resolve) => setTimeout(resolve, 200))
  await t.rejects(ring.verify(token, expect), { code: 'ERR_JWT_EXPIRED' })
})
