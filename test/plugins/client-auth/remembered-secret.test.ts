import t from 'tap'
import { Redis } from 'ioredis'
import { build, seedAdmin, REDIS_URL } from '../../helper.js'
import { registerClient, requestToken } from '../../routes/oauth/support.js'

/**
 * A secret verified once (argon2) is remembered as a digest, and each use keeps it ten more
 * minutes: an agent in use never goes back to argon2. Observed through the reservation every
 * argon2 verification takes in Redis for its address (`authfail-inflight:<ip>`), watched with
 * MONITOR: each step comes from an address of its own, and only a verification reserves.
 */
const MINUTE = 60_000

t.test('a remembered secret stays remembered while it is used: ten minutes after its last use, not after its first', async (t) => {
  const app = await build(t, { env: { TRUST_PROXY: '127.0.0.1', RATE_LIMIT_TOKEN_PER_CLIENT: '0' } })
  const redis = new Redis(REDIS_URL)
  const monitor = await redis.monitor()
  t.teardown(() => { monitor.disconnect(); redis.disconnect() })
  const prefix = `${app.config.CACHE_PREFIX}authfail-inflight:`
  const reservedFor = new Set<string>()
  const markers = new Set<string>()
  monitor.on('monitor', (_time: string, args: string[]) => {
    for (const arg of args) {
      if (arg.startsWith(prefix)) reservedFor.add(arg.slice(prefix.length))
      if (arg.startsWith('marker-')) markers.add(arg)
    }
  })
  const admin = await seedAdmin(app)
  const client = await registerClient(app, admin.headers)
  const realNow = Date.now
  t.teardown(() => { Date.now = realNow })

  /** A token request from `ip`, `minutes` on by the process's clock; whether it ran argon2. */
  async function verifiedAt (minutes: number, ip: string): Promise<boolean> {
    Date.now = () => realNow() + minutes * MINUTE
    const res = await requestToken(app, client, { headers: { 'x-forwarded-for': ip } })
    t.equal(res.statusCode, 200, `a token at ${minutes} min`)
    // MONITOR's copy of the commands arrives on a connection of its own: an ECHO sent after the
    // request, once the monitor has seen it, says every command before it was seen too
    const marker = `marker-${ip}`
    await redis.echo(marker)
    while (!markers.has(marker)) await new Promise((resolve) => setTimeout(resolve, 10))
    return reservedFor.has(ip)
  }

  t.equal(await verifiedAt(0, '198.51.100.1'), true, 'the first use runs argon2')
  t.equal(await verifiedAt(9, '198.51.100.2'), false, 'nine minutes on: remembered, and kept ten minutes from now')
  t.equal(await verifiedAt(18, '198.51.100.3'), false, 'eighteen minutes after the first use, nine after the last: still remembered')
  t.equal(await verifiedAt(29, '198.51.100.4'), true, 'eleven minutes unused: forgotten, argon2 again')
})
