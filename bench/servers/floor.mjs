// The floor (BENCH_FLOOR=1): a bare Fastify route that parses the same form and signs a token of
// the same shape the way AgentIdP does (node:crypto on libuv's threads) — no client authentication,
// no database, no audit, no metrics. What this machine can do before any of the product's work.
// Prints one JSON line once it listens.
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto'
import { promisify } from 'node:util'
import Fastify from 'fastify'
import formbody from '@fastify/formbody'

const port = Number(process.argv[2])
const signOffLoop = promisify(sign)
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
const encode = (json) => Buffer.from(JSON.stringify(json)).toString('base64url')
const header = encode({ alg: 'RS256', typ: 'at+jwt', kid: 'floor' })
const issuer = `http://127.0.0.1:${port}`

const app = Fastify({ logger: false })
await app.register(formbody)
app.post('/token', async function issue (request, reply) {
  const iat = Math.floor(Date.now() / 1000)
  const agent = randomUUID()
  const input = `${header}.${encode({ iss: issuer, sub: agent, client_id: agent, aud: issuer, iat, exp: iat + 3600, jti: randomUUID(), scope: request.body.scope })}`
  const signature = await signOffLoop('sha256', Buffer.from(input), privateKey)
  reply.header('cache-control', 'no-store')
  return { access_token: `${input}.${signature.toString('base64url')}`, token_type: 'Bearer', expires_in: 3600, scope: request.body.scope }
})
await app.listen({ port, host: '127.0.0.1' })
process.once('SIGTERM', () => { app.close().then(() => process.exit(0)) })
process.stdout.write(JSON.stringify({ ready: true, tokenPath: '/token', client_id: 'floor', client_secret: 'floor' }) + '\n')
