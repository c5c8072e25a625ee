import { createPublicKey, generateKeyPairSync } from 'node:crypto'
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
