// A bare Fastify JSON route: GET /json answers a small object, logger off, nothing else. The cost
// of HTTP + Fastify on this machine, against which the product's read routes (introspection, GET
// agent) are compared. argv: <port>.
import Fastify from 'fastify'
import { announce, onStop } from '../lib/announce.mjs'

const port = Number(process.argv[2])
const app = Fastify({ logger: false })
app.get('/json', async function answer () {
  return { status: 'ok', service: 'bare', at: 1 }
})
await app.listen({ port, host: '127.0.0.1' })
onStop(() => app.close())
announce({ ready: true, path: '/json' })
