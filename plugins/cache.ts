import fp from 'fastify-plugin'
import fastifyRedis from '@fastify/redis'
import { Redis } from 'ioredis'
import type { FastifyInstance } from 'fastify'
import { DependencyUnavailableError } from '../lib/errors.js'

/**
 * The shared cache: Redis in production, an in-process stand-in in dev mode when REDIS_URL is
 * unset. Redis carries what instances must share: the rate-limit windows (plugins/rate-limit.ts
 * uses the client as `app.redis`), reservation counters (client authentication's verifications in
 * flight per address) and invalidation broadcasts for what instances keep in memory.
 * The durable state — revocation, quotas — is in PostgreSQL, so losing Redis loses nothing that
 * matters. A Redis outage fails requests fast with a 503: the offline queue is off, so nothing
 * waits for a reconnect.
 */
export interface Cache {
  readonly kind: 'redis' | 'memory'
  ping (): Promise<void>
  /** sends `message` to every instance's listeners on `channel`, this one's included */
  broadcast (channel: string, message: string): Promise<void>
  /**
   * Listens on `channel`. `onTrust(true)` says messages are arriving; `onTrust(false)` says some may
   * be missed (the subscription is down): whatever depends on them must stop trusting its copies.
   */
  listen (channel: string, onMessage: (message: string) => void, onTrust: (trusted: boolean) => void): void
  /**
   * A counter every instance shares, for reservations: `reserve` adds one and resolves with the
   * count, this reservation included; the key lives `ttlMs` past the last reservation, so what a
   * process that died holding reservations leaves behind expires. `release` takes one back, never
   * below zero.
   */
  reserve (key: string, ttlMs: number): Promise<number>
  release (key: string): Promise<void>
  /**
   * Claims `key` for `ttlMs`: true for the first claim on any instance, false while the key lives
   * (single-use checks such as an assertion's jti).
   */
  claimOnce (key: string, ttlMs: number): Promise<boolean>
  close (): Promise<void>
}

// one round trip each, atomic: the count and its expiry together; a release never leaves a negative count
const RESERVE = "local n = redis.call('INCR', KEYS[1]) redis.call('PEXPIRE', KEYS[1], ARGV[1]) return n"
const RELEASE = "local n = redis.call('DECR', KEYS[1]) if n <= 0 then redis.call('DEL', KEYS[1]) end return n"

export type CommandObserver = (command: string, seconds: number) => void

interface TimedCommand { name: string, promise: Promise<unknown> }

/**
 * Times every command the connection sends — the cache's, the rate limiter's EVALSHA, PUBLISH,
 * ioredis's own handshake — from sendCommand to its reply or failure. A command can pass through
 * sendCommand more than once (offline queue flush, resend after a reconnect): it is timed once.
 */
export function timeCommands (client: Redis, observe: CommandObserver): void {
  const send = client.sendCommand.bind(client)
  const timed = new WeakSet<object>()
  client.sendCommand = function timedSendCommand (command, stream) {
    if (!timed.has(command)) {
      timed.add(command)
      const { name, promise } = command as unknown as TimedCommand
      const started = process.hrtime.bigint()
      const done = () => { observe(name, Number(process.hrtime.bigint() - started) / 1e9) }
      promise.then(done, done)
    }
    return send(command, stream)
  }
}

function redisCache (client: Redis, prefix: string, observe: CommandObserver, log: FastifyInstance['log']): Cache {
  // a connection in subscriber mode can do nothing else; its offline queue is on so that a
  // SUBSCRIBE issued while reconnecting is sent once connected (no request ever waits on it)
  const subscriber = client.duplicate({ enableOfflineQueue: true, lazyConnect: true })
  timeCommands(subscriber, observe)
  const listeners = new Map<string, Array<(message: string) => void>>()
  const trustListeners: Array<(trusted: boolean) => void> = []
  const setTrust = (trusted: boolean) => { trustListeners.forEach((listener) => listener(trusted)) }

  subscriber.on('message', function dispatch (channel: string, message: string) {
    listeners.get(channel)?.forEach((listener) => listener(message))
  })
  subscriber.on('ready', function resubscribe () {
    subscriber.subscribe(...listeners.keys()).then(() => setTrust(true), () => setTrust(false))
  })
  for (const event of ['close', 'reconnecting', 'end']) subscriber.on(event, () => setTrust(false))
  subscriber.on('error', function logSubscriberError (error: Error) {
    log.warn({ err: { message: error.message } }, 'redis subscriber connection error')
  })

  return {
    kind: 'redis',
    async ping () {
      try {
        await client.ping()
      } catch (error) {
        throw new DependencyUnavailableError('redis', { cause: error })
      }
    },
    async broadcast (channel, message) {
      try {
        await client.publish(prefix + channel, message)
      } catch (error) {
        throw new DependencyUnavailableError('redis', { cause: error })
      }
    },
    listen (channel, onMessage, onTrust) {
      const key = prefix + channel
      listeners.set(key, [...(listeners.get(key) ?? []), onMessage])
      trustListeners.push(onTrust)
      onTrust(false)
      if (subscriber.status === 'wait') subscriber.connect().catch(() => {})
      else if (subscriber.status === 'ready') subscriber.subscribe(key).then(() => onTrust(true), () => onTrust(false))
    },
    async reserve (key, ttlMs) {
      try {
        return Number(await client.eval(RESERVE, 1, prefix + key, ttlMs))
      } catch (error) {
        throw new DependencyUnavailableError('redis', { cause: error })
      }
    },
    async release (key) {
      try {
        await client.eval(RELEASE, 1, prefix + key)
      } catch (error) {
        throw new DependencyUnavailableError('redis', { cause: error })
      }
    },
    async claimOnce (key, ttlMs) {
      try {
        return await client.set(prefix + key, '1', 'PX', ttlMs, 'NX') === 'OK'
      } catch (error) {
        throw new DependencyUnavailableError('redis', { cause: error })
      }
    },
    async close () {
      subscriber.disconnect()
      client.disconnect()
    }
  }
}

/** The in-process stand-in of dev mode: one process, so a broadcast is a local call and always arrives. */
export function memoryCache (): Cache {
  const listeners = new Map<string, Array<(message: string) => void>>()
  // one process: no instance can die holding a reservation, so nothing needs to expire
  const counters = new Map<string, number>()
  const claims = new Map<string, number>()
  return {
    kind: 'memory',
    ping: async () => {},
    broadcast: async (channel, message) => { listeners.get(channel)?.forEach((listener) => listener(message)) },
    listen: (channel, onMessage, onTrust) => {
      listeners.set(channel, [...(listeners.get(channel) ?? []), onMessage])
      onTrust(true)
    },
    reserve: async (key) => {
      const count = (counters.get(key) ?? 0) + 1
      counters.set(key, count)
      return count
    },
    release: async (key) => {
      const count = (counters.get(key) ?? 0) - 1
      if (count <= 0) counters.delete(key)
      else counters.set(key, count)
    },
    claimOnce: async (key, ttlMs) => {
      const now = Date.now()
      if ((claims.get(key) ?? 0) > now) return false
      // forget lapsed claims now and then, so the map stays as small as the live ones
      if (claims.size > 10_000) for (const [claimed, until] of claims) if (until <= now) claims.delete(claimed)
      claims.set(key, now + ttlMs)
      return true
    },
    close: async () => { listeners.clear() }
  }
}

/** ioredis settings that make an outage fail fast instead of queueing requests. */
export function createRedisClient (url: string): Redis {
  return new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    commandTimeout: 1000,
    // keep reconnecting for as long as the process lives; health reports the outage meanwhile
    retryStrategy: (attempt: number) => Math.min(attempt * 200, 2000)
  })
}

/** How long start waits for Redis: well inside Fastify's plugin timeout, so the reason is ours to tell. */
const START_TIMEOUT_MS = 5000

/** Resolves once the client is ready; a DependencyUnavailableError naming host:port when it isn't in time. */
async function connected (client: Redis, url: string): Promise<void> {
  if (client.status === 'ready') return
  const { hostname, port } = new URL(url)
  await new Promise<void>((resolve, reject) => {
    let lastError: unknown
    const onError = (error: unknown) => { lastError = error }
    const cleanup = () => {
      clearTimeout(timer)
      client.off('ready', onReady)
      client.off('error', onError)
    }
    const onReady = () => { cleanup(); resolve() }
    const timer = setTimeout(() => {
      cleanup()
      reject(new DependencyUnavailableError('redis', { cause: lastError, location: `${hostname}:${port || '6379'}` }))
    }, START_TIMEOUT_MS)
    client.on('ready', onReady)
    client.on('error', onError)
  })
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
  timeCommands(client, observe)
  client.on('error', function logRedisError (error: Error) {
    // handled here so an outage never becomes an unhandled 'error' event that kills the process
    app.log.warn({ err: { message: error.message, code: (error as { code?: string }).code } }, 'redis connection error')
  })
  try {
    await connected(client, url)
  } catch (error) {
    client.disconnect()
    throw error
  }
  await app.register(fastifyRedis, { client, closeClient: false })
  const cache = redisCache(client, app.config.CACHE_PREFIX, observe, app.log)
  app.decorate('cache', cache)
  app.addHook('onClose', async () => { await cache.close() })
}, { name: 'cache', dependencies: ['config'], fastify: '5.x' })
