import t from 'tap'
import { Redis } from 'ioredis'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { build } from '../../helper.js'
import { startPrivateRedis, waitFor } from '../../support/private-services.js'
import {
  AGENTS, REVOKE, basic, bearer, bootstrap, introspect, registerClient, requestToken, tokenFor, withDb, type Tap
} from '../../support/oauth-flow.js'

/**
 * Redis is the fast path, PostgreSQL the record. Against a PRIVATE redis-server (the shared one must
 * never stop) that runs without persistence, a restart loses every key: revocations and the monthly
 * quota must survive it, and while Redis is down the token endpoint must refuse (503), never issue
 * a token without its rate limiter, and introspection must never call a revoked token active.
 */

const redis = await startPrivateRedis(t)
const env = { REDIS_URL: redis.url, TOKEN_MONTHLY_QUOTA: '3', RATE_LIMIT_TOKEN_PER_CLIENT: '100', RATE_LIMIT_AUTH_FAILURES_PER_IP: '30' }
const app = await build(t, { env })
// a second instance whose only Redis use on the token path is the per-client limiter
const limiterOnly = await build(t, { databaseUrl: app.databaseUrl, env: { ...env, RATE_LIMIT_AUTH_FAILURES_PER_IP: '0' } })
const admin = await bootstrap(app.databaseUrl)
const adminToken = await tokenFor(app, admin)
const client = await registerClient(app, adminToken)

async function dbsize (): Promise<number> {
  const probe = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false })
  try {
    await probe.connect()
    return await probe.dbsize()
  } finally {
    probe.disconnect()
  }
}

async function issuedRows (): Promise<number> {
  return await withDb(app.databaseUrl, async (db) => (await db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_events WHERE action = 'token.issued'")).rows[0].n)
}

async function monthlyCount (agentId: string): Promise<number | null> {
  return await withDb(app.databaseUrl, async (db) => {
    const { rows } = await db.query<{ count: number }>(
      "SELECT count FROM token_monthly_counts WHERE agent_id = $1 AND month = date_trunc('month', now() AT TIME ZONE 'UTC')::date", [agentId])
    return rows.length === 0 ? null : rows[0].count
  })
}

async function redisHealthy (target: FastifyInstance): Promise<boolean> {
  const res = await target.inject({ method: 'GET', url: '/health' })
  return res.statusCode === 200 && (res.json() as { redis: string }).redis === 'connected'
}

function assertTemporarilyUnavailable (t: Tap, res: LightMyRequestResponse, label: string): void {
  t.equal(res.statusCode, 503, `${label}: 503 (${res.body.slice(0, 160)})`)
  t.equal((res.json() as { error?: string }).error, 'temporarily_unavailable', `${label}: temporarily_unavailable`)
  t.notOk('access_token' in (res.json() as object), `${label}: no token in the body`)
  t.equal(res.headers['cache-control'], 'no-store', `${label}: no-store`)
}

t.test('revocations and the monthly quota survive a Redis restart; a Redis outage never issues or revives a token', async (t) => {
  const revoked = await tokenFor(app, client)
  const kept = await tokenFor(app, client)
  t.equal((await requestToken(app, client)).statusCode, 200, 'the third token of the month is issued (quota 3)')
  t.equal(await monthlyCount(client.clientId), 3, 'token_monthly_counts holds 3')
  const revocation = await app.inject({
    method: 'POST', url: REVOKE, headers: { authorization: basic(client.clientId, client.clientSecret) }, payload: { token: revoked }
  })
  t.equal(revocation.statusCode, 200, 'one token revoked')
  t.same((await introspect(app, adminToken, revoked)).json(), { active: false }, 'the revoked token is inactive before the restart')
  t.ok(await dbsize() > 0, 'Redis holds rate-limit windows before the restart')

  await t.test('while Redis is down', async (t) => {
    await redis.stop()
    t.notOk(await redisHealthy(app), 'health reports Redis down (the outage is real)')
    const rowsBefore = await issuedRows()

    assertTemporarilyUnavailable(t, await requestToken(app, admin), 'token request of an agent with quota left')
    assertTemporarilyUnavailable(t, await requestToken(limiterOnly, admin), 'token request on an instance whose only Redis use is the per-client limiter')
    const posted = await app.inject({
      method: 'POST', url: '/api/v1/token', payload: { grant_type: 'client_credentials', client_id: admin.clientId, client_secret: admin.clientSecret }
    })
    assertTemporarilyUnavailable(t, posted, 'client_secret_post in JSON')
    t.equal(await issuedRows(), rowsBefore, 'no token was issued during the outage')

    for (const [label, target] of [['instance A', app], ['instance B', limiterOnly]] as const) {
      const byBearer = await introspect(target, adminToken, revoked)
      t.ok(byBearer.statusCode === 503 || (byBearer.statusCode === 200 && byBearer.body === '{"active":false}'),
        `${label}: introspection of the revoked token (Bearer caller) is {active:false} or 503, got ${byBearer.statusCode} ${byBearer.body}`)
      const byClient = await target.inject({
        method: 'POST', url: '/api/v1/token/introspect', headers: { authorization: basic(admin.clientId, admin.clientSecret) }, payload: { token: revoked }
      })
      t.ok(byClient.statusCode === 503 || (byClient.statusCode === 200 && byClient.body === '{"active":false}'),
        `${label}: introspection of the revoked token (client caller) is {active:false} or 503, got ${byClient.statusCode} ${byClient.body}`)
      const api = await target.inject({ method: 'GET', url: `${AGENTS}/${client.clientId}`, headers: bearer(revoked) })
      t.ok(api.statusCode === 401 || api.statusCode === 503, `${label}: the management API refuses the revoked token, got ${api.statusCode}`)
      const live = await introspect(target, adminToken, kept)
      t.not(live.statusCode, 500, `${label}: introspection of a live token is never a 500`)
    }
  })

  await redis.start()
  t.equal(await dbsize(), 0, 'the restarted Redis is empty: every window and cached key is gone')
  await waitFor('the app to reconnect to Redis', () => redisHealthy(app), 15_000, 100)
  await waitFor('the second instance to reconnect to Redis', () => redisHealthy(limiterOnly), 15_000, 100)

  t.same((await introspect(app, adminToken, revoked)).json(), { active: false }, 'the revoked token is still inactive after the restart')
  t.same((await introspect(limiterOnly, adminToken, revoked)).json(), { active: false }, 'on both instances')
  const api = await app.inject({ method: 'GET', url: `${AGENTS}/${client.clientId}`, headers: bearer(revoked) })
  t.equal(api.statusCode, 401, 'the management API still refuses the revoked token')
  t.equal((await introspect(app, adminToken, kept)).json<{ active: boolean }>().active, true, 'an unrevoked token is still active')

  const fourth = await requestToken(app, client)
  t.equal(fourth.statusCode, 429, 'the fourth token of the month is refused after the restart')
  t.equal((fourth.json() as { error: string }).error, 'quota_exceeded', 'with quota_exceeded')
  t.match(fourth.headers['retry-after'], /^[1-9]\d*$/, 'and a Retry-After')
  const onOther = await requestToken(limiterOnly, client)
  t.equal(onOther.statusCode, 429, 'on the other instance too')
  t.equal(await monthlyCount(client.clientId), 3, 'token_monthly_counts still holds 3')
  t.equal((await requestToken(app, admin)).statusCode, 200, 'an agent with quota left is served again once Redis is back')
})
