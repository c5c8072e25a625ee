import fp from 'fastify-plugin'
import fastifyPostgres from '@fastify/postgres'
import pg from 'pg'
import type { FastifyInstance } from 'fastify'
import { sqlOperation } from '../lib/metric-labels.js'

export type QueryObserver = (operation: string, seconds: number) => void

/**
 * The pool's connection class, timing every query it runs (pool.query, transactions, named
 * statements alike) from the moment it is handed to the connection to its result or error. The
 * pool calls it with a callback, repositories with promises; cursors (`submit`) are not timed.
 */
export function timedClient (observe: QueryObserver): typeof pg.Client {
  return class TimedClient extends pg.Client {
    override query (...args: unknown[]): any {
      const [config] = args
      const query = super.query as (...args: unknown[]) => unknown
      if (typeof (config as { submit?: unknown } | null)?.submit === 'function') return query.apply(this, args)
      const operation = sqlOperation(config)
      const started = process.hrtime.bigint()
      const done = () => { observe(operation, Number(process.hrtime.bigint() - started) / 1e9) }
      const callbackAt = args.findIndex((arg) => typeof arg === 'function')
      if (callbackAt !== -1) {
        const callback = args[callbackAt] as (...results: unknown[]) => void
        args[callbackAt] = function timedCallback (...results: unknown[]) { done(); callback(...results) }
        return query.apply(this, args)
      }
      const result = query.apply(this, args) as Promise<unknown> | undefined
      result?.then(done, done)
      return result
    }
  }
}

/**
 * PostgreSQL through @fastify/postgres. Timeouts are short on purpose: during an outage a request
 * fails within ~2 s with a 503 rather than waiting for a connection that is not coming.
 */
export default fp(async function dbPlugin (app: FastifyInstance) {
  await app.register(fastifyPostgres, {
    connectionString: app.config.DATABASE_URL,
    max: 20,
    connectionTimeoutMillis: 2000,
    idleTimeoutMillis: 30_000,
    query_timeout: 5000,
    statement_timeout: 5000,
    application_name: 'agentidp',
    Client: timedClient(function observeQuery (operation, seconds) { app.metrics?.observeDb(operation, seconds) })
  })
  // An idle client losing its server (restart, failover) emits 'error' on the pool; unhandled, it
  // would kill the process. The pool discards that client and connects a new one on next use.
  app.pg.pool.on('error', function logIdleClientError (error: Error) {
    app.log.warn({ err: { message: error.message, code: (error as { code?: string }).code } }, 'postgres idle client error')
  })
}, { name: 'db', dependencies: ['config'], fastify: '5.x' })
