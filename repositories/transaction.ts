import type { Pool, PoolClient, QueryResult, QueryResultRow } from 'pg'

/**
 * What every repository function takes: the pool, or the client of a transaction in progress.
 * Hot-path queries pass `{ name, text, values }`: a named statement is parsed and planned once per
 * connection.
 */
export interface Queryable {
  query<R extends QueryResultRow = QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>
  query<R extends QueryResultRow = QueryResultRow>(statement: { name: string, text: string, values: unknown[] }): Promise<QueryResult<R>>
}

export type TransactionClient = PoolClient

/** Anything that hands out connections: the app's pool, or a command's own small pool. */
export type ConnectionSource = Pick<Pool, 'connect'>

/**
 * The one way to run a transaction: `work` gets a client on which BEGIN has run; COMMIT when it
 * resolves, ROLLBACK when it throws (and the error is rethrown). While the client is checked out it
 * has an error listener of its own — a connection that dies mid-transaction must fail this
 * transaction, never the process — and a client that failed is destroyed, not returned to the pool.
 */
export async function inTransaction<T> (source: ConnectionSource, work: (db: TransactionClient) => Promise<T>, mode = 'READ WRITE'): Promise<T> {
  const client = await source.connect()
  let connectionError: Error | undefined
  const onError = (error: Error) => { connectionError = error }
  client.on('error', onError)
  try {
    await client.query(`BEGIN ${mode}`)
    const result = await work(client)
    await client.query('COMMIT')
    return result
  } catch (error) {
    // a ROLLBACK that fails means the connection is unusable: destroy it below
    await client.query('ROLLBACK').catch((rollbackError: Error) => { connectionError ??= rollbackError })
    throw error
  } finally {
    client.off('error', onError)
    // a broken connection goes back as "destroy me" (release with an error), never to be reused
    client.release(connectionError)
  }
}
