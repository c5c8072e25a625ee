import { createRequire } from 'node:module'
import fp from 'fastify-plugin'
import fastifyRateLimit, { type FastifyRateLimitStore } from '@fastify/rate-limit'
import type { FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'

/**
 * @fastify/rate-limit, with nothing limited globally: features create the limiters they need with
 * `app.createRateLimit()` (token requests per client, failed client and Bearer authentications per
 * IP). Counters live in Redis so every instance sees the same windows; in dev mode without Redis
 * they live in-process. If Redis can't answer, the limiter's error surfaces as a 503, never as "no
 * limit".
 *
 * Key names: each limiter's keyGenerator starts its keys with the limiter's name, and the Redis
 * key is `<CACHE_PREFIX>rl:<name>:<subject>` — `rl:token:<agentId>`, `rl:authfail:<ip>`,
 * `rl:bearerfail:<ip>`. The package's own Redis store would put the route of the limiter between
 * namespace and key, and a limiter made with createRateLimit() has no route: its keys came out as
 * `rl:undefinedundefined-token:<agentId>`. So the package's Redis store is used as it is (same
 * Lua scripts), only its children keep the namespace unchanged.
 */

type RedisStoreCtor = new (continueExceeding: boolean, exponentialBackoff: boolean, redis: Redis, key: string) => FastifyRateLimitStore
/** what a store's constructor and `child()` receive: the plugin's or the limiter's merged options */
interface StoreOptions { continueExceeding?: boolean, exponentialBackoff?: boolean }

// the package exports only the plugin; its Redis store is a CommonJS module of the same package
const RedisStore = createRequire(import.meta.url)('@fastify/rate-limit/store/RedisStore.js') as RedisStoreCtor

/** The package's RedisStore whose children (one per limiter) share its namespace instead of adding a route to it. */
function namedRedisStore (redis: Redis, nameSpace: string) {
  return class NamedRedisStore extends RedisStore {
    constructor (options: object) {
      const { continueExceeding, exponentialBackoff } = options as StoreOptions
      super(continueExceeding === true, exponentialBackoff === true, redis, nameSpace)
    }

    override child (options: object): FastifyRateLimitStore {
      return new NamedRedisStore(options)
    }
  }
}

export default fp(async function rateLimitPlugin (app: FastifyInstance) {
  await app.register(fastifyRateLimit, {
    global: false,
    skipOnError: false,
    ...(app.hasDecorator('redis') ? { store: namedRedisStore(app.redis, `${app.config.CACHE_PREFIX}rl:`) } : {})
  })
}, { name: 'rate-limit', dependencies: ['config', 'cache'], fastify: '5.x' })
