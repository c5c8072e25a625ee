// The floor: a bare Fastify route that parses the same form and signs a token of the same shape the
// way AgentIdP does (node:crypto with a callback, on libuv's threads) — no client authentication, no
// database, no audit, no metrics, no logs. What this machine can do before any of the product's
// work. argv: <port> [RS256|ES256|EdDSA] (or BENCH_ALG).
import { randomUUID, sign } from 'node:crypto'
import { promisify } from 'node:util'
import Fastify from 'fastify'
import { parse as parseForm } from 'fast-querystring'
import { announce, onStop } from '../lib/announce.mjs'
import { b64json, keyPairFor, signArguments } from '../lib/jws.mjs'

const port = Number(process.argv[2])
const alg = process.argv[3] ?? process.env.BENCH_ALG ?? 'RS256'
const signOffLoop = promisify(sign)
const [digest, key] = signArguments(alg, keyPairFor(alg).privateKey)
const header = b64json({ alg, typ: 'at+jwt', kid: 'floor' })
const issuer = `http://127.0.0.1:${port}`

const app = Fastify({ logger: false })
// the form parser the product uses (fast-querystring, what @fastify/formbody runs; @fastify/formbody
// itself is not installed)
app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'buffer' }, function parseTokenForm (_request, body, done) {
  done(null, parseForm(body.toString('utf8')))
})
app.post('/token', async function issue (request, reply) {
  const iat = Math.floor(Date.now() / 1000)
  const agent = randomUUID()
  const input = `${header}.${b64json({ iss: issuer, sub: agent, client_id: agent, aud: issuer, iat, exp: iat + 3600, jti: randomUUID(), scope: request.body.scope })}`
  const signature = await signOffLoop(digest, Buffer.from(input), key)
  reply.header('cache-control', 'no-store')
  return { access_token: `${input}.${signature.toString('base64url')}`, token_type: 'Bearer', expires_in: 3600, scope: request.body.scope }
})
await app.listen({ port, host: '127.0.0.1' })
onStop(() => app.close())
announce({ ready: true, alg, tokenPath: '/token', client_id: 'floor', client_secret: 'floor' })
