import { randomUUID } from 'node:crypto'
import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { build } from '../helper.js'
import { generateSecret } from '../../services/secrets.js'
import { AGENTS, addCredential, basic, bearer, bootstrap, registerClient, tokenFor, type Client } from '../support/oauth-flow.js'

/**
 * A statistical check, not a benchmark: a failed client authentication costs the same whether the
 * client is unknown, the secret wrong or the credential revoked (each runs one argon2 verification,
 * real or decoy), so an attacker can't enumerate clients or credentials by timing. Samples are
 * interleaved so that load from other test files hits every kind alike, and compared by medians.
 */

const SAMPLES = 17
const MAX_SPREAD = 0.25

// the per-IP failure limit would cut the sampling short; it is not what is measured here
const app = await build(t, { env: { RATE_LIMIT_AUTH_FAILURES_PER_IP: '0', RATE_LIMIT_TOKEN_PER_CLIENT: '0' } })
const admin = await bootstrap(app.databaseUrl)
const adminToken = await tokenFor(app, admin)
const known = await registerClient(app, adminToken)
// the real secret verified once, so this instance remembers it: a wrong secret must still cost argon2
await tokenFor(app, known)
const revoked = await addCredential(app, adminToken, known.clientId)
const revocation = await app.inject({ method: 'DELETE', url: `${AGENTS}/${known.clientId}/credentials/${revoked.credentialId}`, headers: bearer(adminToken) })
if (revocation.statusCode !== 204) throw new Error(`credential revocation failed: ${revocation.body}`)

type Kind = 'unknown client' | 'wrong secret' | 'revoked credential'

/** A fresh failing attempt of each kind (new values every time, so nothing can be cached). */
const attempts: Record<Kind, () => Client> = {
  'unknown client': () => ({ clientId: randomUUID(), clientSecret: generateSecret(randomUUID()) }),
  'wrong secret': () => ({ clientId: known.clientId, clientSecret: generateSecret(known.credentialId as string) }),
  'revoked credential': () => revoked
}
const KINDS = Object.keys(attempts) as Kind[]

async function timed (client: Client): Promise<{ ms: number, res: LightMyRequestResponse }> {
  const started = process.hrtime.bigint()
  const res = await app.inject({
    method: 'POST',
    url: '/api/v1/token',
    headers: { authorization: basic(client.clientId, client.clientSecret), 'content-type': 'application/x-www-form-urlencoded' },
    payload: 'grant_type=client_credentials'
  })
  return { ms: Number(process.hrtime.bigint() - started) / 1e6, res }
}

function median (values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

interface Round { medians: Record<Kind, number>, ratios: Record<Kind, number>, spread: number, bodies: Set<string> }

/**
 * SAMPLES triples, one attempt of each kind back to back (in rotating order). Other test files load
 * the machine in bursts, which moves absolute times a lot but hits the three attempts of one triple
 * alike; so each attempt is compared with its own triple (its time over the triple's median), and
 * the kinds are compared by the median of those ratios.
 */
async function round (): Promise<Round> {
  const samples = Object.fromEntries(KINDS.map((kind) => [kind, [] as number[]])) as Record<Kind, number[]>
  const relative = Object.fromEntries(KINDS.map((kind) => [kind, [] as number[]])) as Record<Kind, number[]>
  const bodies = new Set<string>()
  for (let i = 0; i < SAMPLES; i++) {
    const triple = {} as Record<Kind, number>
    for (let k = 0; k < KINDS.length; k++) {
      const kind = KINDS[(i + k) % KINDS.length]
      const { ms, res } = await timed(attempts[kind]())
      bodies.add(`${res.statusCode} ${res.body}`)
      samples[kind].push(ms)
      triple[kind] = ms
    }
    const middle = median(Object.values(triple))
    for (const kind of KINDS) relative[kind].push(triple[kind] / middle)
  }
  const medians = Object.fromEntries(KINDS.map((kind) => [kind, median(samples[kind])])) as Record<Kind, number>
  const ratios = Object.fromEntries(KINDS.map((kind) => [kind, median(relative[kind])])) as Record<Kind, number>
  const values = Object.values(ratios)
  return { medians, ratios, spread: Math.max(...values) / Math.min(...values) - 1, bodies }
}

const describe = (r: Round) => KINDS.map((kind) => `${kind} ${r.medians[kind].toFixed(1)} ms (×${r.ratios[kind].toFixed(2)})`).join(', ')

t.test('failed client authentications take the same time whether the client is unknown, the secret wrong or the credential revoked', async (t) => {
  // warm-up: the first verifications pay for allocating argon2's memory
  for (const kind of KINDS) await timed(attempts[kind]())
  let result = await round()
  // one more round only if the first was disturbed: a real difference shows up in both
  if (result.spread >= MAX_SPREAD) {
    t.comment(`first round spread ${(result.spread * 100).toFixed(0)}% (${describe(result)}); measuring again`)
    result = await round()
  }
  t.ok(result.spread < MAX_SPREAD, `median relative times within ${MAX_SPREAD * 100}% of each other: ${describe(result)} (spread ${(result.spread * 100).toFixed(1)}%)`)
  t.ok(Math.min(...Object.values(result.medians)) > 25, 'every failure does real (argon2, ≈ 45 ms) work, not an early return')
  t.same([...result.bodies].map((body) => body.replace(/"error_description":"[^"]*"/, '')), ['401 {"error":"invalid_client",}'],
    'every failure is the same 401 invalid_client')
})
