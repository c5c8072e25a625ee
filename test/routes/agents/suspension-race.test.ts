import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import t from 'tap'
import { build } from '../../helper.js'
import { findAgent, setAgentStatus } from '../../../repositories/agents.js'
import { accessToken, bootstrapClient, registerClient } from '../oauth/support.js'
import { agentUrl, bearer } from './support.js'

/**
 * A token issued before a suspension commits is dead for good: it stays dead after reactivation
 * (API.md: the per-agent "valid after" instant). Found by test/resilience/races.test.ts, where
 * two tokens issued before a suspension came alive again once the agent was reactivated: the
 * instant was the suspension transaction's start (`now()`), and tokens issued while that
 * transaction was under way — before it held the agent's row lock, which a loaded server may
 * take hundreds of milliseconds to reach — carried an `iat` of a later second. The instant is now
 * read when the status is written, after the lock: every token issued before it is older.
 */
t.test('a token issued while a suspension is under way stays dead after reactivation', async (t) => {
  const app = await build(t)
  const admin = await bootstrapClient(app)
  const client = await registerClient(app, admin.headers)

  // the suspension's transaction, as the PATCH route runs it, but slow to reach the agent's lock
  const db = new pg.Client({ connectionString: app.databaseUrl })
  await db.connect()
  t.teardown(() => db.end())
  await db.query('BEGIN')
  const { rows: [{ started }] } = await db.query<{ started: string }>('SELECT (extract(epoch FROM now()) * 1000)::bigint AS started')
  // meanwhile a whole second boundary passes, and the client gets a token in the next second
  const nextSecond = (Math.floor(Number(started) / 1000) + 1) * 1000
  while (Date.now() < nextSecond + 20) await sleep(10)
  const token = await accessToken(app, client)
  await findAgent(db, client.agentId, { forUpdate: true })
  await setAgentStatus(db, client.agentId, 'suspended')
  await db.query('COMMIT')
  await app.clientDirectory.changed({ agentId: client.agentId })

  const self = () => app.inject({ method: 'GET', url: agentUrl(client.agentId), headers: bearer(token) })
  t.equal((await self()).statusCode, 401, 'dead while suspended')
  const reactivated = await app.inject({ method: 'PATCH', url: agentUrl(client.agentId), headers: admin.headers, payload: { status: 'active' } })
  t.equal(reactivated.statusCode, 200, reactivated.body)
  t.equal((await self()).statusCode, 401, 'and still dead after reactivation: it was issued before the suspension committed')
  const fresh = await accessToken(app, client)
  t.equal((await app.inject({ method: 'GET', url: agentUrl(client.agentId), headers: bearer(fresh) })).statusCode, 200, 'a token issued after reactivation works')
})
