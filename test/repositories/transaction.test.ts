import t from 'tap'
import pg from 'pg'
import { BASE_DATABASE_URL } from '../helper.js'
import { inTransaction } from '../../repositories/transaction.js'
import { isDependencyFailure } from '../../lib/errors.js'

/**
 * The one transaction helper. A connection that dies while its client is checked out (idle in
 * transaction) emits 'error' on the client; unhandled, that event killed the process (issue 11,
 * defect 1). Here the backend of a transaction in progress is terminated from another connection:
 * the transaction must fail as a dependency failure, the process must live, and the pool must hand
 * out a working connection next.
 */
t.test('a backend terminated mid-transaction fails that transaction (503-class), never the process; the pool recovers', async (t) => {
  const pool = new pg.Pool({ connectionString: BASE_DATABASE_URL, max: 1 })
  pool.on('error', () => {})
  t.teardown(() => pool.end())
  const admin = new pg.Client({ connectionString: BASE_DATABASE_URL })
  await admin.connect()
  t.teardown(() => admin.end())
  let uncaught: unknown = null
  const onUncaught = (error: unknown) => { uncaught = error }
  process.on('uncaughtException', onUncaught)
  t.teardown(() => { process.off('uncaughtException', onUncaught) })

  const failed = await inTransaction(pool, async (db) => {
    const { rows: [{ pid }] } = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')
    // the client sits idle in transaction while its server process is killed
    await admin.query('SELECT pg_terminate_backend($1)', [pid])
    await new Promise((resolve) => setTimeout(resolve, 200))
    await db.query('SELECT 1')
  }).then(() => null, (error: unknown) => error)

  t.ok(failed !== null, 'the transaction failed')
  t.ok(isDependencyFailure(failed), `as a dependency failure (answered 503): ${(failed as Error)?.message}`)
  t.equal(uncaught, null, 'no uncaught error: the process would have died')
  const { rows } = await pool.query<{ ok: number }>('SELECT 1 AS ok')
  t.same(rows, [{ ok: 1 }], 'the pool replaced the dead connection')
  await inTransaction(pool, async (db) => { await db.query('SELECT 1') })
  t.pass('and transactions work again')
})

t.test('a transaction whose work throws is rolled back and its error rethrown unchanged', async (t) => {
  const pool = new pg.Pool({ connectionString: BASE_DATABASE_URL, max: 1 })
  t.teardown(() => pool.end())
  const table = `tx_${process.pid}_${Date.now()}`
  await pool.query(`CREATE TEMP TABLE IF NOT EXISTS ${table} (n int)`)
  const refusal = new Error('refused by a rule')

  await t.rejects(inTransaction(pool, async (db) => {
    await db.query(`INSERT INTO ${table} VALUES (1)`)
    throw refusal
  }), refusal)

  const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${table}`)
  t.same(rows, [{ n: 0 }], 'nothing of it stays')
})
