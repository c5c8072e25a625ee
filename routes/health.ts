import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Health } from '../schemas/health.js'

/** Each dependency gets this long; /health must answer within 1 s even when one hangs. */
const PROBE_TIMEOUT_MS = 700

async function probe (check: () => Promise<unknown>): Promise<'connected' | 'error'> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'error'>((resolve) => { timer = setTimeout(() => resolve('error'), PROBE_TIMEOUT_MS) })
  try {
    return await Promise.race([check().then(() => 'connected' as const, () => 'error' as const), timeout])
  } finally {
    clearTimeout(timer)
  }
}

const health: FastifyPluginAsyncTypebox = async function healthRoutes (app) {
  app.get('/health', {
    logLevel: 'warn',
    schema: {
      tags: ['operations'],
      operationId: 'getHealth',
      summary: 'Liveness and dependency status',
      response: { 200: Health, 503: Health }
    }
  }, async function getHealth (_request, reply) {
    const [postgres, redis] = await Promise.all([
      probe(() => app.pg.query('SELECT 1')),
      probe(() => app.cache.ping())
    ])
    const healthy = postgres === 'connected' && redis === 'connected'
    reply.code(healthy ? 200 : 503).header('cache-control', 'no-store')
    return { status: healthy ? 'ok' as const : 'degraded' as const, postgres, redis }
  })
}

export default health
