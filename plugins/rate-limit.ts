import fp from 'fastify-plugin'
import fastifyRateLimit from '@fastify/rate-limit'
import type { FastifyInstance } from 'fastify'

/**
 * @fastify/rate-limit, with nothing limited globally: features create the limiters they need with
 * `app.createRateLimit()` (token requests per client, failed authentications per IP). Counters live
 * in Redis so every instance sees the same windows; in dev mode without Redis they live in-process.
 * If Redis can't answer, the limiter's error surfaces as a 503, never as "no limit".
 */
export default fp(async function rateLimitPlugin (app: FastifyInstance) {
  await app.register(fastifyRateLimit, {
    global: false,
    skipOnError: false,
    ...(app.hasDecorator('redis') ? { redis: app.redis, nameSpace: `${app.config.CACHE_PREFIX}rl:` } : {})
  })
}, { name: 'rate-limit', dependencies: ['config', 'cache'], fastify: '5.x' })
