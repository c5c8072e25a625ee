import pg from 'pg'
import type { LightMyRequestResponse } from 'fastify'
import t from 'tap'
import { build } from '../helper.js'
import { AGENTS, bootstrap, INTROSPECT, registerClient, tokenFor } from '../support/oauth-flow.js'
import { waitFor } from '../support/private-services.js'

/**
 * A statement PostgreSQL cancels — the pool's statement_timeout (5 s, plugins/db.ts) expiring on
 * a write stuck behind a lock, or a cancel request — fails with SQLSTATE 57014. That is the
 * database not answering in time, like a query read timeout: a 503 with Retry-After, never a 500.
 * Found by test/resilience/faults-midflight.test.ts (a lock on audit_events held past the
 * statement timeout made introspection answer 500 server_error). Here the stuck statement is
 * cancelled with pg_cancel_backend, the same SQLSTATE without waiting 5 s.
 */
const app = await build(t)
const admin = await bootstrap(app.databaseUrl)
const adminToken = await tokenFor(app, admin)
const client = await registerClient(app, adminToken)

/** Runs `request` while our transaction holds `lock`, cancels the server's statement waiting for it, and returns the answer. */
async function cancelledBehind (lock: string, values: unknown[], request: () => Promise<LightMyRequestResponse>) {
  const holder = new pg.Client({ connectionString: app.databaseUrl })
  await holder.connect()
  const canceller = new pg.Client({ connectionString: app.databaseUrl })
  await canceller.connect()
  try {
    await holder.query('BEGIN')
    await holder.query(lock, values)
    const holderPid = (await holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0].pid
    const answer = request()
    // only the backends our lock blocks: other test files share this PostgreSQL
    let cancelled = 0
    await waitFor('the server\'s statement to wait for our lock', async () => {
      const { rows } = await canceller.query<{ cancelled: boolean }>(
        'SELECT pg_cancel_backend(pid) AS cancelled FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))', [holderPid])
      cancelled += rows.filter((row) => row.cancelled).length
      return cancelled > 0
    }, 60_000, 20)
    return await answer
  } finally {
    await holder.query('ROLLBACK').catch(() => {})
    await holder.end()
    await canceller.end()
  }
}

t.test('an audit write cancelled behind a lock: introspection answers 503 temporarily_unavailable, not 500', async (t) => {
  const response = await cancelledBehind('LOCK TABLE audit_events IN SHARE MODE', [], () => app.inject({
    method: 'POST', url: INTROSPECT, headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/x-www-form-urlencoded' }, payload: `token=${adminToken}`
  }))
  t.equal(response.statusCode, 503, response.body)
  t.equal(response.json().error, 'temporarily_unavailable')
  t.ok(response.headers['retry-after'], 'with Retry-After')
})

t.test('a PATCH cancelled while it waits for the agent\'s row lock answers 503 SERVICE_UNAVAILABLE, not 500', async (t) => {
  const response = await cancelledBehind('SELECT 1 FROM agents WHERE agent_id = $1 FOR UPDATE', [client.clientId], () => app.inject({
    method: 'PATCH', url: `${AGENTS}/${client.clientId}`, headers: { authorization: `Bearer ${adminToken}` }, payload: { version: '9.9.9' }
  }))
  t.equal(response.statusCode, 503, response.body)
  t.equal(response.json().code, 'SERVICE_UNAVAILABLE')
  t.notMatch(response.body, /cancel|statement|57014/i, 'no driver text')
})

t.test('once the lock is gone the same requests succeed', async (t) => {
  const response = await app.inject({ method: 'PATCH', url: `${AGENTS}/${client.clientId}`, headers: { authorization: `Bearer ${adminToken}` }, payload: { version: '9.9.9' } })
  t.equal(response.statusCode, 200)
})
