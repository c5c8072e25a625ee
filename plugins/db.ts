import fp from 'fastify-plugin'
import fastifyPostgres from '@fastify/postgres'
import type { FastifyInstance } from 'fastify'
import type { PoolClient, QueryResult, QueryResultRow } from 'pg'

/**
 * What a repository needs: the pool, or the client of a transaction in progress. Hot-path queries
 * pass `{ name, text, values }`: a named statement is parsed and planned once per connection.
 */
export interface Queryable {
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>
  query<R extends QueryResultRow = QueryResultRow>(statement: { name: string, text: string, values: unknown[] }): Promise<QueryResult<R>>
}

export type TransactionClient = PoolClient

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
    application_name: 'agentidp'
  })
  // An idle client losing its server (restart, failover) emits 'error' on the pool; unhandled, it
  // would kill the process. The pool discards that client and connects a new one on next use.
  app.pg.pool.on('error', function logIdleClientError (error: Error) {
    app.log.warn({ err: { message: error.message, code: (error as { code?: string }).code } }, 'postgres idle client error')
  })
}, { name: 'db', dependencies: ['config'], fastify: '5.x' })
