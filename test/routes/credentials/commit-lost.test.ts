import t from 'tap'
import type { PoolClient } from 'pg'
import { build } from '../../helper.js'
import { AGENTS, bootstrap, registerClient, requestToken, tokenFor, withDb, type Client } from '../../support/oauth-flow.js'

/**
 * The answer to generate and rotate is the only copy of the new secret. When the COMMIT's answer is
 * lost (the connection dies, or the database stalls past the query timeout and resumes), the
 * server must find out whether it committed before it answers: a 503 for a rotation that committed
 * leaves the client with no working secret — the old one is refused, the new one was never handed
 * out. Found by test/resilience/faults-midflight.test.ts (a rotation's backend frozen before
 * COMMIT answered 503 after the query timeout, then committed when it resumed). Here the pool's
 * connections are wrapped so that the next COMMIT is lost: after it ran, or before it was sent
 * (the transaction left open on a live backend).
 */
const app = await build(t)
const admin = await bootstrap(app.databaseUrl)
const adminToken = await tokenFor(app, admin)
const asAdmin = { authorization: `Bearer ${adminToken}` }

type Loss = 'after-commit' | 'before-commit'
let armed: Loss | null = null
const wrapped = new WeakSet<object>()
const pool = app.pg.pool
const connect = pool.connect.bind(pool) as () => Promise<PoolClient>
// only the promise form: inTransaction's; pool.query's callback form goes through untouched
pool.connect = function lossyConnect (this: unknown, ...args: unknown[]) {
  if (args.length > 0) return (connect as (...rest: unknown[]) => unknown)(...args)
  return connect().then((client) => {
    if (wrapped.has(client)) return client
    wrapped.add(client)
    const query = client.query.bind(client) as (...rest: unknown[]) => Promise<unknown>
    // only the COMMIT of a transaction that wrote a credential (the sealer and other jobs commit too)
    let wroteCredential = false
    ;(client as unknown as { query: unknown }).query = async function lossyQuery (...rest: unknown[]) {
      const text = typeof rest[0] === 'string' ? rest[0] : String((rest[0] as { text?: string } | undefined)?.text ?? '')
      if (text.startsWith('BEGIN')) wroteCredential = false
      if (/^(UPDATE credentials|INSERT INTO credentials)/.test(text.trim())) wroteCredential = true
      if (text !== 'COMMIT' || armed === null || !wroteCredential) return await query(...rest)
      const loss = armed
      armed = null
      if (loss === 'after-commit') await query(...rest)
      throw Object.assign(new Error('Connection terminated unexpectedly'), { injected: loss })
    }
    return client
  })
} as typeof pool.connect

async function works (client: Client, secret: string): Promise<number> {
  return (await requestToken(app, { clientId: client.clientId, clientSecret: secret })).statusCode
}

async function rotatedEvents (credentialId: string): Promise<number> {
  return await withDb(app.databaseUrl, async (db) =>
    (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_events WHERE action = 'credential.rotated' AND metadata->>'credentialId' = $1", [credentialId])).rows[0].n)
}

t.test('a rotation whose COMMIT happened but whose answer was lost is answered 200 with the new secret, which works; the old one is refused', async (t) => {
  const client = await registerClient(app, adminToken)
  armed = 'after-commit'
  const res = await app.inject({ method: 'POST', url: `${AGENTS}/${client.clientId}/credentials/${client.credentialId}/rotate`, headers: asAdmin })
  t.equal(armed, null, 'the COMMIT was lost')
  t.equal(res.statusCode, 200, `the committed rotation is answered with its secret: ${res.body}`)
  const fresh = res.statusCode === 200 ? (res.json() as { clientSecret: string }).clientSecret : ''
  t.equal(await works(client, fresh), 200, 'the new secret works')
  t.equal(await works(client, client.clientSecret), 401, 'the old secret is refused')
  t.equal(await rotatedEvents(client.credentialId), 1, 'one credential.rotated event')
})

t.test('a rotation whose COMMIT never reached the database is answered 503 and changes nothing: the old secret still works', async (t) => {
  const client = await registerClient(app, adminToken)
  armed = 'before-commit'
  const res = await app.inject({ method: 'POST', url: `${AGENTS}/${client.clientId}/credentials/${client.credentialId}/rotate`, headers: asAdmin })
  t.equal(armed, null, 'the COMMIT was lost')
  t.equal(res.statusCode, 503, res.body)
  t.equal((res.json() as { code: string }).code, 'SERVICE_UNAVAILABLE')
  // the transaction was left open on a live backend: settling it ended it (aborted), nothing waits on its locks
  t.equal(await works(client, client.clientSecret), 200, 'the old secret still works')
  t.equal(await rotatedEvents(client.credentialId), 0, 'no credential.rotated event')
  const again = await app.inject({ method: 'POST', url: `${AGENTS}/${client.clientId}/credentials/${client.credentialId}/rotate`, headers: asAdmin })
  t.equal(again.statusCode, 200, 'the credential is not left locked: a retry rotates it')
})

t.test('a generated credential whose COMMIT happened but whose answer was lost is answered 201 with its secret, which works', async (t) => {
  const client = await registerClient(app, adminToken)
  armed = 'after-commit'
  const res = await app.inject({ method: 'POST', url: `${AGENTS}/${client.clientId}/credentials`, headers: asAdmin })
  t.equal(armed, null, 'the COMMIT was lost')
  t.equal(res.statusCode, 201, `the committed credential is answered with its secret: ${res.body}`)
  const secret = res.statusCode === 201 ? (res.json() as { clientSecret: string }).clientSecret : ''
  t.equal(await works(client, secret), 200, 'its secret works')
})
