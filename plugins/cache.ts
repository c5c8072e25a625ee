import fp from 'fastify-plugin'
import fastifyRedis from '@fastify/redis'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { DependencyUnavailableError } from './errors.js'

/**
 * The shared cache: Redis in production, an in-process stand-in in dev mode. Everything that must
 * be shared between instances (revocation fast path, rate-limit windows, verified-secret digests)
 * goes through this interface. A Redis outage surfaces as DependencyUnavailableError at once:
 * the offline queue is off, so no request waits for a reconnect.
 */
export interface Cache {
  readonly kind: 'redis' | 'memory'
  get (key: string): Promise<string | null>
  /** several keys in one round trip; missing keys come back as null */
  getMany (keys: string[]): Promise<Array<string | null>>
  set (key: string, value: string, ttlSeconds: number): Promise<void>
  del (...keys: string[]): Promise<void>
  /** fixed-window counter: counts one hit and returns the total and the seconds until the window resets */
  hit (key: string, windowSeconds: number): Promise<{ count: number, resetSeconds: number }>
  ping (): Promise<void>
  close (): Promise<void>
}

export type CommandObserver = (command: string, seconds: number) => void

/** Adds `key` into `value`'s namespace and converts client failures into a 503-worthy error. */
function redisCache (client: Redis, prefix: string, observe: CommandObserver): Cache {
  async function run<T> (command: string, operation: () => Promise<T>): Promise<T> {
    const started = process.hrtime.bigint()
    try {
      return await operation()
    } catch (error) {
      throw new DependencyUnavailableError('redis', { cause: error })
    } finally {
      observe(command, Number(process.hrtime.bigint() - started) / 1e9)
    }
  }
  return {
    kind: 'redis',
    get: (key) => run('get', () => client.get(prefix + key)),
    getMany: (keys) => keys.length === 0 ? Promise.resolve([]) : run('mget', () => client.mget(keys.map((key) => prefix + key))),
    set: (key, value, ttlSeconds) => run('set', async () => { await client.set(prefix + key, value, 'EX', ttlSeconds) }),
    del: (...keys) => keys.length === 0 ? Promise.resolve() : run('del', async () => { await client.del(...keys.map((key) => prefix + key)) }),
    hit: (key, windowSeconds) => run('incr', async () => {
      // INCR + EXPIRE NX in one MULTI: the first hit of a window starts its clock, later hits don't extend it
      const replies = await client.multi().incr(prefix + key).expire(prefix + key, windowSeconds, 'NX').ttl(prefix + key).exec()
      if (replies === null) throw new Error('transaction aborted')
      const [[incrError, count], , [ttlError, ttl]] = replies as Array<[Error | null, number]>
      if (incrError !== null || ttlError !== null) throw incrError ?? ttlError
      return { count, resetSeconds: ttl > 0 ? ttl : windowSeconds }
    }),
    ping: () => run('ping', async () => { await client.ping() }),
    close: async () => { client.disconnect() }
  }
}

/** The in-process stand-in used by `npm run dev` when REDIS_URL is unset: one process, no sharing. */
export function memoryCache (): Cache {
  const entries = new Map<string, { value: string, expiresAt: number }>()
  const read = (key: string): string | null => {
    const entry = entries.get(key)
    if (entry === undefined) return null
    if (entry.expiresAt <= Date.now()) {
      entries.delete(key)
      return null
    }
    return entry.value
  }
  const sweep = setInterval(function sweepExpired () {
    const now = Date.now()
    for (const [key, entry] of entries) if (entry.expiresAt <= now) entries.delete(key)
  }, 60_000)
  sweep.unref()
  return {
    kind: 'memory',
    get: async (key) => read(key),
    getMany: async (keys) => keys.map(read),
    set: async (key, value, ttlSeconds) => { entries.set(key, { value, expiresAt: Date.now() + ttlSeconds * 1000 }) },
    del: async (...keys) => { keys.forEach((key) => entries.delete(key)) },
    hit: async (key, windowSeconds) => {
      const current = entries.get(key)
      const now = Date.now()
      if (current === undefined || current.expiresAt <= now) {
        entries.set(key, { value: '1', expiresAt: now + windowSeconds * 1000 })
        return { count: 1, resetSeconds: windowSeconds }
      }
      current.value = String(Number(current.value) + 1)
      return { count: Number(current.value), resetSeconds: Math.max(1, Math.ceil((current.expiresAt - now) / 1000)) }
    },
    ping: async () => {},
    close: async () => { clearInterval(sweep); entries.clear() }
  }
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
    app.log.warn('REDIS_URL is not set: using the in-process cache (dev mode only; nothing is shared between instances)')
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
  const cache = redisCache(client, app.config.CACHE_PREFIX, observe)
  app.decorate('cache', cache)
  app.addHook('onClose', async () => { await cache.close() })
}, { name: 'cache', dependencies: ['config'], fastify: '5.x' })
