import t from 'tap'
import { build, seedAdmin } from '../../helper.js'
import { generateSecret } from '../../../services/secrets.js'
import { auditRows, registerClient, requestToken } from '../../routes/oauth/support.js'

/**
 * Issue 11, defect 5: the per-IP failed-authentication limit must hold under concurrency. Before,
 * the IP's failure count was only read before the argon2 verification and raised after it, so 300
 * wrong secrets sent at once from one address all passed the check and ran ~231 verifications
 * (limit 30), filling the shared argon2 queue and making other clients' first authentications wait
 * for seconds. Now a verification is reserved before it runs (failures so far + verifications in
 * flight never exceed the limit) and each address has its own argon2 queue.
 */
const LIMIT = 30
const ATTACK = 300
// Measured once the flood is under way (its first verification answered): the bystander's own
// verification then waits for at most one of the attacker's, which run one at a time, so only a
// couple of them finish meanwhile; before the fix it queued behind every one still pending (~30
// here, ~200 then) or was refused 503 when the shared queue was full. Counted in verifications,
// not milliseconds, so a loaded CI machine slows both sides alike and the verdict stands.
const PROMPT_VERIFICATIONS = 5
const FLOOD_DEADLINE_MS = 30_000

const app = await build(t, { env: { RATE_LIMIT_AUTH_FAILURES_PER_IP: String(LIMIT), RATE_LIMIT_TOKEN_PER_CLIENT: '0' } })
const admin = await seedAdmin(app)
const target = await registerClient(app, admin.headers)
const bystander = await registerClient(app, admin.headers)

async function until (condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + FLOOD_DEADLINE_MS
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setImmediate(resolve))
  }
}

t.test(`${ATTACK} concurrent wrong secrets from one IP run at most ${LIMIT} verifications; the rest are refused at once with 429, and another IP's client gets its token promptly`, async (t) => {
  const attacker = '198.51.100.20'
  // a well-formed secret naming the target's real credential: each one costs a real argon2 verification
  const wrong = () => ({ agentId: target.agentId, secret: generateSecret(target.credentialId) })
  let verified401 = 0
  let answered = 0
  const flood = Promise.all(Array.from({ length: ATTACK }, () => requestToken(app, wrong(), { remoteAddress: attacker }).then((res) => {
    answered += 1
    if (res.statusCode === 401) verified401 += 1
    return res
  })))
  await until(() => verified401 > 0, 'the first verification of the flood')

  // the bystander's first authentication (nothing remembered yet): it needs argon2 too
  const verifiedBefore = verified401
  const started = performance.now()
  const own = await requestToken(app, bystander, { remoteAddress: '203.0.113.50' })
  const waited = performance.now() - started
  const answeredMeanwhile = answered
  const verifiedMeanwhile = verified401 - verifiedBefore
  const responses = await flood
  const pendingAtStart = responses.filter((res) => res.statusCode === 401).length - verifiedBefore

  t.ok(answeredMeanwhile < ATTACK, `measured while the flood was still running (${answeredMeanwhile} of ${ATTACK} answered)`)
  t.equal(own.statusCode, 200, `the bystander gets its token: ${own.body}`)
  t.ok(pendingAtStart > 2 * PROMPT_VERIFICATIONS, `the flood had ${pendingAtStart} verifications still to run when the bystander asked`)
  t.ok(verifiedMeanwhile <= PROMPT_VERIFICATIONS,
    `the bystander waits behind at most ${PROMPT_VERIFICATIONS} of them, not the queue (${verifiedMeanwhile} finished meanwhile, ${Math.round(waited)} ms)`)

  const statuses = responses.map((res) => res.statusCode)
  const rejected = statuses.filter((status) => status === 401).length
  const refused = responses.filter((res) => res.statusCode === 429)
  t.equal(rejected + refused.length, ATTACK, `every attempt is either 401 or 429: ${[...new Set(statuses)].join(', ')}`)
  const verified = await auditRows(app, 'auth.failed', { metadataKey: 'reason', metadataValue: 'bad_secret' })
  t.ok(verified.length <= LIMIT, `at most ${LIMIT} verifications ran: ${verified.length} bad_secret events, ${refused.length} refusals`)
  t.equal(verified.length, rejected, 'each 401 is one audited verification')
  t.ok(refused.length > 0 && refused.every((res) => res.json().error === 'rate_limited' && Number(res.headers['retry-after']) >= 1),
    'each refusal is rate_limited with Retry-After')

  // the refusals are audited as auth_failures_rate_limited: the first at once, the rest summarised
  await app.audit.flushSummaries()
  const denials = (await auditRows(app, 'access.denied', { metadataKey: 'reason', metadataValue: 'auth_failures_rate_limited' }))
    .filter((row) => row.ip_address === attacker)
  const summarised = denials.reduce((sum, row) => sum + (typeof row.metadata.suppressed === 'number' ? row.metadata.suppressed : 1), 0)
  t.equal(summarised, refused.length, `the audit trail accounts for every refusal (${denials.length} rows)`)
  t.ok(denials.length <= 2, 'in at most two rows: the first refusal and one summary')
})
