import { randomUUID } from 'node:crypto'
import { Agent, request as httpRequest } from 'node:http'
import t from 'tap'
import { agentBody, createSchema } from '../helper.js'
import { basic, bootstrap } from '../support/oauth-flow.js'
import { ensureBuild, waitFor } from '../support/private-services.js'
import { generateSecret } from '../../services/secrets.js'
import { quantile, recordFigures, spawnServer } from './support.js'

/**
 * Timing of a failed client authentication, over real TCP against the compiled server (issue 11;
 * test/security/timing.test.ts checks the same in-process for three kinds): an unknown client, a
 * wrong secret, a revoked or an expired credential and a decommissioned agent must get the same
 * 401 invalid_client — same body, same headers — after the same work, so that nobody can learn by
 * timing which clients and credentials exist. Attempts are interleaved in a shuffled order each
 * round, so that load from elsewhere on the machine falls on every kind alike; medians are compared.
 */

const ROUNDS = Number(process.env.RESILIENCE_TIMING_ROUNDS ?? 25)
const MAX_SPREAD = 0.25

await ensureBuild()
const { databaseUrl } = await createSchema(t)
const admin = await bootstrap(databaseUrl)
const { base } = await spawnServer(t, databaseUrl, { RATE_LIMIT_AUTH_FAILURES_PER_IP: '0', RATE_LIMIT_TOKEN_PER_CLIENT: '0', TOKEN_MONTHLY_QUOTA: '0' })

// one connection, reused: no connection set-up in any sample
const agent = new Agent({ keepAlive: true, maxSockets: 1 })
t.teardown(() => agent.destroy())
interface Answer { status: number, body: string, headers: Record<string, unknown>, ms: number }
function send (method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint()
    const req = httpRequest(`${base}${path}`, { method, agent, headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers, ms: Number(process.hrtime.bigint() - started) / 1e6 }))
    })
    req.on('error', reject)
    req.end(body)
  })
}
const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const token = async (clientId: string, secret: string) => await send('POST', '/api/v1/token', { authorization: basic(clientId, secret), ...FORM }, 'grant_type=client_credentials')
const adminBearer = { authorization: `Bearer ${(JSON.parse((await token(admin.clientId, admin.clientSecret)).body) as { access_token: string }).access_token}` }

async function newAgent (): Promise<string> {
  const created = await send('POST', '/api/v1/agents', { ...adminBearer, 'content-type': 'application/json' }, JSON.stringify(agentBody({ capabilities: ['docs:read'] })))
  return (JSON.parse(created.body) as { agentId: string }).agentId
}
async function newCredential (agentId: string, expiresAt?: string): Promise<{ credentialId: string, clientSecret: string }> {
  const res = await send('POST', `/api/v1/agents/${agentId}/credentials`, { ...adminBearer, 'content-type': 'application/json' }, JSON.stringify(expiresAt === undefined ? {} : { expiresAt }))
  if (res.status !== 201) throw new Error(`credential refused: ${res.status} ${res.body}`)
  return JSON.parse(res.body) as { credentialId: string, clientSecret: string }
}

const known = await newAgent()
const good = await newCredential(known)
// verified once, so this instance remembers it: a wrong secret must still cost a real argon2
await token(known, good.clientSecret)
const revoked = await newCredential(known)
await send('DELETE', `/api/v1/agents/${known}/credentials/${revoked.credentialId}`, adminBearer)
const expired = await newCredential(known, new Date(Date.now() + 2000).toISOString())
const gone = await newAgent()
const goneCredential = await newCredential(gone)
await send('DELETE', `/api/v1/agents/${gone}`, adminBearer)
await waitFor('the short-lived credential to expire', async () => (await token(known, expired.clientSecret)).status === 401, 10_000, 250)

/** A fresh failing attempt of each kind (new values where they can be new: nothing to cache). */
const KINDS: Record<string, () => [string, string]> = {
  'unknown client': () => [randomUUID(), generateSecret(randomUUID())],
  'wrong secret': () => [known, generateSecret(good.credentialId)],
  'revoked credential': () => [known, revoked.clientSecret],
  'expired credential': () => [known, expired.clientSecret],
  'decommissioned agent': () => [gone, goneCredential.clientSecret]
}
const names = Object.keys(KINDS)
const times = new Map<string, number[]>(names.map((name) => [name, []]))
const answers = new Map<string, Set<string>>(names.map((name) => [name, new Set()]))
let medians: Array<[string, number]> = []
let spread = 0

t.test(`${names.length} kinds of failed client authentication, ${ROUNDS} interleaved rounds`, async (t) => {
  for (let round = 0; round < ROUNDS + 2; round += 1) {
    const order = [...names].sort(() => Math.random() - 0.5)
    for (const name of order) {
      const [clientId, secret] = KINDS[name]()
      const res = await token(clientId, secret)
      // the first two rounds warm up (JIT, the decoy hash, the client directory); not measured
      if (round >= 2) times.get(name)?.push(res.ms)
      answers.get(name)?.add(`${res.status} ${res.body} www-authenticate=${String(res.headers['www-authenticate'])} ${Object.keys(res.headers).filter((header) => !['date', 'x-request-id', 'content-length'].includes(header)).sort().join(',')}`)
    }
  }
  const all = new Set([...answers.values()].flatMap((set) => [...set]))
  t.equal(all.size, 1, 'one and the same answer for every kind (status, body, headers)', { answers: [...all] })
  t.match([...all][0], /^401 \{"error":"invalid_client"/)

  medians = names.map((name) => [name, quantile(times.get(name) as number[], 0.5)])
  const overall = quantile(medians.map(([, median]) => median), 0.5)
  spread = Math.max(...medians.map(([, median]) => Math.abs(median - overall) / overall))
  t.comment(`medians: ${medians.map(([name, median]) => `${name} ${median.toFixed(1)} ms`).join(', ')}; widest ${(spread * 100).toFixed(0)} % from their median`)
  t.ok(spread <= MAX_SPREAD, `every kind's median within ${MAX_SPREAD * 100} % of the others' (${(spread * 100).toFixed(0)} %)`)
})

t.teardown(() => {
  const low = Math.min(...medians.map(([, median]) => median))
  const high = Math.max(...medians.map(([, median]) => median))
  recordFigures({
    part: 'timing',
    inputsTried: names.length * (ROUNDS + 2),
    verdicts: { 'invalid_client timing': `${spread <= MAX_SPREAD ? 'ok' : 'FAILED'}: medians ${low.toFixed(1)}–${high.toFixed(1)} ms over ${names.length} kinds × ${ROUNDS} (widest ${(spread * 100).toFixed(0)} % off, bound ${MAX_SPREAD * 100} %)` }
  })
})
