import { setTimeout as sleep } from 'node:timers/promises'
import type { Pool, PoolClient, QueryResult, QueryResultRow } from 'pg'
import { isDependencyFailure } from '../lib/errors.js'

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

export interface TransactionOptions {
  /** what follows BEGIN; 'READ WRITE' by default */
  mode?: string
  /**
   * When the COMMIT's answer is lost (the connection dies, or no answer within the query
   * timeout), find out on another connection whether it committed, and resolve if it did: for
   * writes whose answer is the only copy of what they made (a new or rotated client secret), a
   * 503 for a transaction that committed would leave the client with nothing that works.
   */
  settleCommit?: boolean
}

/**
 * How long a lost COMMIT is looked for before its outcome is given up as unknown. A backend that
 * is stalled (not dead) decides only when it runs again: its termination is pending, but a COMMIT
 * already in its input may still win (test/resilience/faults-midflight.test.ts saw it, 2 of 3
 * times, with 3 s here). So the wait covers stalls of up to 15 s beyond the 5 s query timeout —
 * still within the 30 s a request may take (REQUEST_TIMEOUT_MS) — for writes as rare as these.
 */
const SETTLE_MS = 15_000

/**
 * The one way to run a transaction: `work` gets a client on which BEGIN has run; COMMIT when it
 * resolves, ROLLBACK when it throws (and the error is rethrown). While the client is checked out it
 * has an error listener of its own — a connection that dies mid-transaction must fail this
 * transaction, never the process — and a client that failed is destroyed, not returned to the pool.
 * A COMMIT whose answer is lost is not rolled back (its connection is gone or stuck): with
 * `settleCommit` its outcome is settled first (see settledCommitted).
 */
export async function inTransaction<T> (source: ConnectionSource, work: (db: TransactionClient) => Promise<T>, options: string | TransactionOptions = 'READ WRITE'): Promise<T> {
  const { mode = 'READ WRITE', settleCommit = false } = typeof options === 'string' ? { mode: options } : options
  const client = await source.connect()
  let connectionError: Error | undefined
  let released = false
  const onError = (error: Error) => { connectionError = error }
  client.on('error', onError)
  // a broken connection goes back as "destroy me" (release with an error), never to be reused
  const release = () => {
    if (released) return
    released = true
    client.off('error', onError)
    client.release(connectionError)
  }
  try {
    await client.query(`BEGIN ${mode}`)
    const result = await work(client)
    const identity = settleCommit ? await transactionIdentity(client) : undefined
    try {
      await client.query('COMMIT')
    } catch (commitError) {
      if (!isDependencyFailure(commitError)) throw commitError
      // the COMMIT was sent and its answer lost: a ROLLBACK could only queue behind it
      connectionError ??= commitError as Error
      release()
      if (identity !== undefined && await settledCommitted(source, identity)) return result
      throw commitError
    }
    return result
  } catch (error) {
    // a ROLLBACK that fails means the connection is unusable: destroy it below
    if (!released) await client.query('ROLLBACK').catch((rollbackError: Error) => { connectionError ??= rollbackError })
    throw error
  } finally {
    release()
  }
}

interface TransactionIdentity { xact: string, xid: string, pid: number }

/** The transaction's id (assigned now if it has none) and its backend, read just before COMMIT. */
async function transactionIdentity (db: Queryable): Promise<TransactionIdentity> {
  const { rows: [row] } = await db.query<{ xact: string, pid: number }>('SELECT pg_current_xact_id()::text AS xact, pg_backend_pid() AS pid')
  // pg_stat_activity shows the 32-bit xid: the 64-bit one without its epoch
  return { xact: row.xact, xid: (BigInt(row.xact) & 0xffffffffn).toString(), pid: row.pid }
}

/**
 * Whether the transaction committed, asked on another connection (PostgreSQL's pg_xact_status,
 * made for exactly this). While it is still in progress — its backend has not noticed that its
 * client is gone, or is stalled — that backend is terminated, which aborts the transaction unless
 * the COMMIT already happened, and the status is asked again. False when it aborted, and when no
 * answer came within SETTLE_MS (unknown: the caller keeps its 503).
 */
async function settledCommitted (source: ConnectionSource, identity: TransactionIdentity): Promise<boolean> {
  const deadline = Date.now() + SETTLE_MS
  let checker
  try {
    checker = await source.connect()
  } catch {
    return false
  }
  let broken: Error | undefined
  const onError = (error: Error) => { broken = error }
  checker.on('error', onError)
  try {
    for (;;) {
      const { rows: [{ status }] } = await checker.query<{ status: string | null }>('SELECT pg_xact_status($1::xid8) AS status', [identity.xact])
      if (status === 'committed') return true
      if (status !== 'in progress' || Date.now() > deadline) return false
      await checker.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
        WHERE pid = $1 AND backend_xid::text = $2`, [identity.pid, identity.xid])
      await sleep(50)
    }
  } catch (error) {
    broken ??= error as Error
    return false
  } finally {
    checker.off('error', onError)
    checker.release(broken)
  }
}
