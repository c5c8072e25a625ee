import fp from 'fastify-plugin'
import fastifyRedis from '@fastify/redis'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { DependencyUnavailableError } from './errors.js'

/**
 * The shared cache: Redis in production, an in-process stand-in in dev mode when REDIS_URL is
 * unset. Redis holds what instances must share: the rate-limit windows (plugins/rate-limit.ts uses
 * the client as `app.redis`). The durable state — revocation, quotas — is in PostgreSQL, so losing
 * Redis loses nothing that matters. A Redis outage fails requests fast with a 503: the offline
 * queue is off, so nothing waits for a reconnect.
 */
export interface Cache {
  readonly kind: 'redis' | 'memory'
  ping (): Promise<void>
  close (): Promise<void>
}

export type CommandObserver = (command: string, seconds: number) => void

function redisCache (client: Redis, observe: CommandObserver): Cache {
  return {
    kind: 'redis',
    async ping () {
      const started = process.hrtime.bigint()
      try {
        await client.ping()
      } catch (error) {
        throw new DependencyUnavailableError('redis', { cause: error })
      } finally {
        observe('ping', Number(process.hrtime.bigint() - started) / 1e9)
      }
    },
    close: async () => { client.disconnect() }
  }
}

/** The in-process stand-in of dev mode: one process, nothing to share, always up. */
export function memoryCache (): Cache {
  return { kind: 'memory', ping: async () => {}, close: async () => {} }
}

/** ioredis settings that make an outage fail fast instead of queueing requests. */
export function createRedisClient (url: string): Redis {
  const client = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    commandTimeout: 1000,
    // keep reconnecting for as long as the process lives; health reports the outage meanwhile
    retryStrategy: (attempt: number) => Math.min(attempt * 200, 2000),
    lazyConnect: false
  })
  return client
}

declare module 'fastify' {
  interface FastifyInstance {
    cache: Cache
  }
}

export default fp(async function cachePlugin (app: FastifyInstance) {
  const observe: CommandObserver = (command, seconds) => app.metrics?.observeRedis(command, seconds)
  const url = app.config.REDIS_URL
  if (url === undefined) {
    app.log.warn('REDIS_URL is not set: rate limits are kept in-process (dev mode only; nothing is shared between instances)')
    const cache = memoryCache()
    app.decorate('cache', cache)
    app.addHook('onClose', async () => { await cache.close() })
    return
  }
  const client = createRedisClient(url)
  client.on('error', function logRedisError (error: Error) {
    // handled here so an outage never becomes an unhandled 'error' event that kills the process
    app.log.warn({ err: { message: error.message, code: (error as { code?: string }).code } }, 'redis connection error')
  })
  await app.register(fastifyRedis, { client, closeClient: false })
  const cache = redisCache(client, observe)
  app.decorate('cache', cache)
  app.addHook('onClose', async () => { await cache.close() })
}, { name: 'cache', dependencies: ['config'], fastify: '5.x' })
