import t from 'tap'
import { Redis } from 'ioredis'
import { build, REDIS_URL, seedAdmin } from '../helper.js'
import { registerClient, requestToken } from '../routes/oauth/support.js'

/**
 * Issue 11, defect 12: @fastify/rate-limit names a limiter made with createRateLimit() after an
 * empty route (`<namespace>undefinedundefined-<key>`). Every limiter's keys must say what they
 * count: `<CACHE_PREFIX>rl:<limiter>:<subject>`.
 */
const app = await build(t, { env: { RATE_LIMIT_TOKEN_PER_CLIENT: '100', RATE_LIMIT_AUTH_FAILURES_PER_IP: '30', RATE_LIMIT_BEARER_FAILURES_PER_IP: '60' } })
const redis = new Redis(REDIS_URL)
t.teardown(() => redis.quit())

async function rateLimitKeys (): Promise<string[]> {
  const keys: string[] = []
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${app.config.CACHE_PREFIX}rl:*`, 'COUNT', 1000)
    keys.push(...batch)
    cursor = next
  } while (cursor !== '0')
  return keys.sort()
}

t.test('each limiter names its Redis keys: rl:token:<agentId>, rl:authfail:<ip>, rl:bearerfail:<ip>', async (t) => {
  const admin = await seedAdmin(app)
  const client = await registerClient(app, admin.headers)
  t.equal((await requestToken(app, client)).statusCode, 200)
  t.equal((await requestToken(app, { agentId: client.agentId, secret: 'sk_live_wrong' }, { remoteAddress: '198.51.100.40' })).statusCode, 401)
  t.equal((await app.inject({ method: 'GET', url: '/api/v1/agents', remoteAddress: '198.51.100.41' })).statusCode, 401)

  const rl = `${app.config.CACHE_PREFIX}rl:`
  t.same(await rateLimitKeys(), [
    `${rl}authfail:198.51.100.40`,
    `${rl}bearerfail:198.51.100.41`,
    `${rl}token:${client.agentId}`
  ])
})
