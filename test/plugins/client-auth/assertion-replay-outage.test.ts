import t from 'tap'
import { build, seedAdmin } from '../../helper.js'
import { migrate } from '../../../repositories/migrations.js'
import { assertOAuthError, auditRows, registerClient } from '../../routes/oauth/support.js'
import { ownAssertion, putKeys, signingKey, tokenWithAssertion } from '../../support/assertions.js'
import { startPrivatePostgres, startPrivateRedis } from '../../support/private-services.js'

/**
 * The single-use check of an assertion's jti fails closed. Redis is its first, shared check;
 * without Redis, PostgreSQL's durable record decides alone (a replay is still refused); with
 * neither, the request is a 503 — never a token for want of a check. Private PostgreSQL and Redis,
 * stopped and started by the test.
 */
const postgres = await startPrivatePostgres(t)
const redis = await startPrivateRedis(t)
await migrate(postgres.url)
const app = await build(t, { databaseUrl: postgres.url, env: { REDIS_URL: redis.url, RATE_LIMIT_AUTH_FAILURES_PER_IP: '0', RATE_LIMIT_TOKEN_PER_CLIENT: '0' } })
const admin = await seedAdmin(app)
const key = await signingKey('ES256')
const agent = await registerClient(app, admin.headers)
t.equal((await putKeys(app, admin.headers, agent.agentId, { jwks: { keys: [key.publicJwk] } })).statusCode, 200)

t.test('with Redis down, an assertion is still single-use: PostgreSQL records it and refuses the replay', async (t) => {
  await redis.stop()
  t.teardown(async () => { await redis.start() })
  const assertion = await ownAssertion(agent.agentId, key)
  const first = await tokenWithAssertion(app, assertion)
  t.equal(first.statusCode, 200, first.body)
  assertOAuthError(t, await tokenWithAssertion(app, assertion), 401, 'invalid_client')
  t.equal((await auditRows(app, 'auth.failed', { agentId: agent.agentId })).filter((row) => row.metadata.reason === 'assertion_replayed').length, 1)
})

t.test('with Redis back, an assertion PostgreSQL recorded during the outage stays used', async (t) => {
  const assertion = await ownAssertion(agent.agentId, key)
  await redis.stop()
  t.equal((await tokenWithAssertion(app, assertion)).statusCode, 200, 'used while Redis was down')
  await redis.start()
  assertOAuthError(t, await tokenWithAssertion(app, assertion), 401, 'invalid_client')
})

t.test('with Redis and PostgreSQL both down, an assertion is answered 503, never a token', async (t) => {
  const assertion = await ownAssertion(agent.agentId, key)
  await redis.stop()
  await postgres.stop()
  t.teardown(async () => {
    await postgres.start()
    await redis.start()
  })
  const res = await tokenWithAssertion(app, assertion)
  assertOAuthError(t, res, 503, 'temporarily_unavailable')
  t.notOk('access_token' in res.json(), 'no token')
})
