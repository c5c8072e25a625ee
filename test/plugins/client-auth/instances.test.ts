import t from 'tap'
import { build, seedAdmin } from '../../helper.js'
import { generateSecret } from '../../../services/secrets.js'
import { auditRows, registerClient, requestToken } from '../../routes/oauth/support.js'

/**
 * The per-IP failed-authentication limit is the address's, whichever instance a request reaches:
 * two instances of one deployment (same database, same Redis key prefix) together run at most
 * RATE_LIMIT_AUTH_FAILURES_PER_IP verifications for one address. Found by
 * test/resilience/abuse.test.ts: the verifications in flight were reserved per instance, so 300
 * concurrent wrong secrets spread over two instances ran 60 verifications (limit 30), N instances
 * N × the limit. The reservations are now a counter in Redis.
 */
const LIMIT = 30
const ATTACK = 300

const env = { RATE_LIMIT_AUTH_FAILURES_PER_IP: String(LIMIT), RATE_LIMIT_TOKEN_PER_CLIENT: '0' }
const first = await build(t, { env })
// the same database, hence the same Redis key prefix: another instance of the same deployment
const second = await build(t, { env, databaseUrl: first.databaseUrl })
const admin = await seedAdmin(first)
const target = await registerClient(first, admin.headers)

t.test(`${ATTACK} concurrent wrong secrets from one IP, spread over two instances, run at most ${LIMIT} verifications`, async (t) => {
  const attacker = '198.51.100.21'
  const responses = await Promise.all(Array.from({ length: ATTACK }, (_, n) =>
    requestToken(n % 2 === 0 ? first : second, { agentId: target.agentId, secret: generateSecret(target.credentialId) }, { remoteAddress: attacker })))
  const statuses = responses.map((res) => res.statusCode)
  const rejected = statuses.filter((status) => status === 401).length
  t.equal(rejected + statuses.filter((status) => status === 429).length, ATTACK, `every attempt is either 401 or 429: ${[...new Set(statuses)].join(', ')}`)
  const verified = await auditRows(first, 'auth.failed', { metadataKey: 'reason', metadataValue: 'bad_secret' })
  t.equal(verified.length, rejected, 'each 401 is one audited verification')
  t.ok(rejected <= LIMIT, `at most ${LIMIT} verifications ran on the two instances together: ${rejected}`)

  // a reservation is released once settled: the address's counter is back to nothing
  const keys = await first.redis.keys(`${first.config.CACHE_PREFIX}authfail-inflight:*`)
  t.same(keys, [], 'no reservation left behind')
})

t.test('a success releases its reservation without counting: an address keeps authenticating', async (t) => {
  // first authentications (nothing remembered: each one reserved and verified), more than the limit
  const clients = []
  for (let n = 0; n < LIMIT + 5; n += 1) clients.push(await registerClient(first, admin.headers))
  // one after the other: verifications in flight count against the limit, settled successes never do
  const statuses: number[] = []
  for (const [n, client] of clients.entries()) statuses.push((await requestToken(n % 2 === 0 ? first : second, client, { remoteAddress: '198.51.100.22' })).statusCode)
  t.same(statuses.filter((status) => status !== 200), [], `${clients.length} first authentications from one address over two instances, none refused`)
  t.same(await first.redis.keys(`${first.config.CACHE_PREFIX}authfail-inflight:*`), [], 'no reservation left behind')
})
