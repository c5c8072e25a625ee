import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { connect } from 'node:net'
import { promisify } from 'node:util'
import t from 'tap'
import { createSchema, testEnv } from '../helper.js'
import { basic, withDb } from '../support/oauth-flow.js'
import { baseEnv, compiledServer, ensureBuild, runProcess, startPrivateRedis, waitFor } from '../support/private-services.js'
import { generateSecret } from '../../services/secrets.js'
import { recordFigures, spawnServer } from './support.js'

/**
 * Secret hygiene of the process as operators run it (issue 11): the compiled server at
 * LOG_LEVEL=trace, its stdout and stderr captured whole, goes through a mixed session — bootstrap
 * by the command line, tokens by every client authentication, registration, credentials generated,
 * rotated and revoked, introspection, revocation, a suspension, wrong and misplaced secrets, a
 * malformed request on a raw socket, a Redis outage (503s and their error lines). Afterwards no
 * client secret, access token or Authorization header value — nor a 20-character piece of one,
 * nor a percent-encoded spelling — may appear in the logs, the audit rows, any error response or
 * a pg_dump of the test's schema. Each value may appear only in the one response that hands it out.
 */

const execFileAsync = promisify(execFile)
const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin'

await ensureBuild()
const { schema, databaseUrl } = await createSchema(t)
// a private Redis, so that the outage below touches nobody else
const redis = await startPrivateRedis(t)
const env = { LOG_LEVEL: 'trace', REDIS_URL: redis.url }

interface Sensitive { value: string, what: string, pieces: string[], handedOutBy?: string }
const sensitive: Sensitive[] = []

/**
 * Registers a value that must be nowhere; pieces: windows of its random part, found even if cut.
 * A value made from another (a wrong secret, a forged token) shares most of it: only its whole.
 */
function secretValue (value: string, what: string, handedOutBy?: string, options: { derived?: boolean } = {}): void {
  if (sensitive.some((entry) => entry.value === value)) return
  const random = value.startsWith('sk_live_') ? value.slice('sk_live_'.length + 24) : value
  const pieces: string[] = []
  for (let start = 0; options.derived !== true && start + 20 <= random.length; start += 5) pieces.push(random.slice(start, start + 20))
  sensitive.push({ value, what, pieces, handedOutBy })
}

/** A JWT's signature is what makes it a token; its header and claims are no secret. */
function tokenValue (token: string, what: string, handedOutBy?: string, options: { derived?: boolean } = {}): void {
  if (sensitive.some((entry) => entry.value === token)) return
  const signature = token.split('.')[2] ?? ''
  const pieces: string[] = []
  for (let start = 0; options.derived !== true && start + 24 <= signature.length; start += 24) pieces.push(signature.slice(start, start + 24))
  sensitive.push({ value: token, what, pieces, handedOutBy })
}

interface Exchange { label: string, status: number, headers: string, body: string }
const exchanges: Exchange[] = []

const bootstrapRun = await runProcess(t, process.execPath, [compiledServer, 'bootstrap', '--email', `root-${randomUUID().slice(0, 8)}@example.com`],
  { env: { ...baseEnv(), ...testEnv(databaseUrl, env), NODE_ENV: 'production' } })
const admin = JSON.parse(bootstrapRun.stdout.trim().split('\n').at(-1) as string) as { clientId: string, clientSecret: string }
secretValue(admin.clientSecret, 'the bootstrap admin secret', 'bootstrap')

const { server, base } = await spawnServer(t, databaseUrl, env)

/** One request; its Authorization value is registered as sensitive, its answer kept for the scan. */
async function call (label: string, path: string, init: { method?: string, headers?: Record<string, string>, body?: string } = {}): Promise<Exchange & { json: () => any }> {
  const authorization = init.headers?.authorization
  if (authorization !== undefined) {
    // the whole value, and what it carries: a token, or (Basic) a client secret; no pieces of the
    // value itself, whose base64 of "client id:" also spells what a token's claims may hold
    if (!sensitive.some((entry) => entry.value === authorization)) sensitive.push({ value: authorization, what: `the Authorization value of "${label}"`, pieces: [] })
    const [scheme, credential = ''] = authorization.split(/\s+/, 2)
    if (/^basic$/i.test(scheme)) {
      const secret = decodeURIComponent(Buffer.from(credential, 'base64').toString('utf8').split(':').slice(1).join(':'))
      if (secret.startsWith('sk_live_')) secretValue(secret, `the secret in the Basic credentials of "${label}"`)
    } else if (credential.split('.').length === 3) {
      tokenValue(credential, `the token in the Authorization of "${label}"`)
    }
  }
  const response = await fetch(`${base}${path}`, { method: init.method ?? 'GET', headers: init.headers, body: init.body })
  const exchange = { label, status: response.status, headers: JSON.stringify([...response.headers]), body: await response.text() }
  exchanges.push(exchange)
  return { ...exchange, json: () => JSON.parse(exchange.body) }
}

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const JSON_TYPE = { 'content-type': 'application/json' }
const form = (values: Record<string, string>) => new URLSearchParams(values).toString()

async function token (label: string, init: Parameters<typeof call>[2]): Promise<string> {
  const res = await call(label, '/api/v1/token', { method: 'POST', ...init })
  if (res.status !== 200) throw new Error(`${label}: ${res.status} ${res.body}`)
  const issued = res.json().access_token as string
  tokenValue(issued, `the token of "${label}"`, label)
  return issued
}

t.test('a mixed session runs as expected (the scan is only as good as the session)', async (t) => {
  const adminToken = await token('token by Basic', { headers: { authorization: basic(admin.clientId, admin.clientSecret), ...FORM }, body: form({ grant_type: 'client_credentials' }) })
  await token('token by post, form', { headers: FORM, body: form({ grant_type: 'client_credentials', client_id: admin.clientId, client_secret: admin.clientSecret }) })
  await token('token by post, JSON', { headers: JSON_TYPE, body: JSON.stringify({ grant_type: 'client_credentials', client_id: admin.clientId, client_secret: admin.clientSecret }) })
  const asAdmin = { authorization: `Bearer ${adminToken}` }

  const created = await call('register', '/api/v1/agents', {
    method: 'POST', headers: { ...asAdmin, ...JSON_TYPE },
    body: JSON.stringify({ email: `hygiene-${randomUUID().slice(0, 8)}@example.com`, agentType: 'router', version: '1.0.0', capabilities: ['docs:read', 'tokens:read'], owner: 'hygiene', deploymentEnv: 'staging' })
  })
  t.equal(created.status, 201, 'registered')
  const agentId = created.json().agentId as string

  const generated = await call('generate', `/api/v1/agents/${agentId}/credentials`, { method: 'POST', headers: asAdmin })
  t.equal(generated.status, 201, 'credential generated')
  const { credentialId, clientSecret: first } = generated.json() as { credentialId: string, clientSecret: string }
  secretValue(first, 'the generated secret', 'generate')
  const agentToken = await token('agent token', { headers: { authorization: basic(agentId, first), ...FORM }, body: form({ grant_type: 'client_credentials' }) })

  const rotated = await call('rotate', `/api/v1/agents/${agentId}/credentials/${credentialId}/rotate`, { method: 'POST', headers: asAdmin })
  t.equal(rotated.status, 200, 'rotated')
  const second = rotated.json().clientSecret as string
  secretValue(second, 'the rotated secret', 'rotate')
  t.equal((await call('old secret after rotation', '/api/v1/token', { method: 'POST', headers: FORM, body: form({ grant_type: 'client_credentials', client_id: agentId, client_secret: first }) })).status, 401)
  const secondToken = await token('token after rotation', { headers: { authorization: basic(agentId, second), ...FORM }, body: form({ grant_type: 'client_credentials' }) })

  // introspection and revocation, by Bearer and by client credentials
  t.equal((await call('introspect by Bearer', '/api/v1/token/introspect', { method: 'POST', headers: { ...asAdmin, ...FORM }, body: form({ token: agentToken }) })).json().active, true)
  t.equal((await call('introspect own token', '/api/v1/token/introspect', { method: 'POST', headers: { authorization: basic(agentId, second), ...FORM }, body: form({ token: secondToken }) })).json().active, true)
  t.equal((await call('revoke own token', '/api/v1/token/revoke', { method: 'POST', headers: { authorization: basic(agentId, second), ...FORM }, body: form({ token: secondToken }) })).status, 200)
  t.same((await call('introspect the revoked token', '/api/v1/token/introspect', { method: 'POST', headers: { ...asAdmin, ...JSON_TYPE }, body: JSON.stringify({ token: secondToken }) })).json(), { active: false })
  t.equal((await call('revoke by admin', '/api/v1/token/revoke', { method: 'POST', headers: { ...asAdmin, ...FORM }, body: form({ token: agentToken, token_type_hint: 'access_token' }) })).status, 200)

  // failures: wrong, unknown and misplaced secrets and tokens
  const lookalike = generateSecret(randomUUID())
  secretValue(lookalike, 'a well-formed secret of no credential')
  const wrong = second.slice(0, -8) + (second.endsWith('AAAAAAAA') ? 'BBBBBBBB' : 'AAAAAAAA')
  secretValue(wrong, 'a wrong secret for a real credential', undefined, { derived: true })
  t.equal((await call('wrong secret by Basic', '/api/v1/token', { method: 'POST', headers: { authorization: basic(agentId, wrong), ...FORM }, body: form({ grant_type: 'client_credentials' }) })).status, 401)
  t.equal((await call('unknown secret by post', '/api/v1/token', { method: 'POST', headers: JSON_TYPE, body: JSON.stringify({ grant_type: 'client_credentials', client_id: randomUUID(), client_secret: lookalike }) })).status, 401)
  t.equal((await call('Basic and post at once', '/api/v1/token', { method: 'POST', headers: { authorization: basic(agentId, second), ...FORM }, body: form({ grant_type: 'client_credentials', client_id: agentId, client_secret: second }) })).status, 400)
  t.equal((await call('secret in the query string', `/api/v1/token?${form({ client_id: agentId, client_secret: second })}`, { method: 'POST', headers: FORM, body: form({ grant_type: 'client_credentials' }) })).status, 401)
  const everyByteEncoded = [...second].map((char) => `%${char.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`).join('')
  t.equal((await call('secret percent-encoded in a path', `/api/v1/agents/${everyByteEncoded}`, { headers: asAdmin })).status, 400)
  t.equal((await call('token in the query string', `/api/v1/agents?access_token=${adminToken}`)).status, 401)
  t.equal((await call('secret in an unknown member', '/api/v1/token', { method: 'POST', headers: JSON_TYPE, body: JSON.stringify({ grant_type: 'client_credentials', client_id: agentId, client_secret: second, password: second }) })).status, 400)
  t.equal((await call('secret in malformed JSON', '/api/v1/token', { method: 'POST', headers: JSON_TYPE, body: `{"grant_type":"client_credentials","client_secret":"${second}"` })).status, 400)
  t.equal((await call('secret in a management body', '/api/v1/agents', { method: 'POST', headers: { ...asAdmin, ...JSON_TYPE }, body: JSON.stringify({ clientSecret: second }) })).status, 400)
  const forged = `${adminToken.slice(0, -12)}AAAAAAAAAAAA`
  tokenValue(forged, 'a forged token', undefined, { derived: true })
  t.equal((await call('forged token', '/api/v1/agents', { headers: { authorization: `Bearer ${forged}` } })).status, 401)
  t.equal((await call('DPoP scheme', '/api/v1/agents', { headers: { authorization: `DPoP ${adminToken}` } })).status, 401)

  // a suspension: the agent's secret still verifies, then unauthorized_client
  t.equal((await call('suspend', `/api/v1/agents/${agentId}`, { method: 'PATCH', headers: { ...asAdmin, ...JSON_TYPE }, body: JSON.stringify({ status: 'suspended' }) })).status, 200)
  t.equal((await call('token while suspended', '/api/v1/token', { method: 'POST', headers: { authorization: basic(agentId, second), ...FORM }, body: form({ grant_type: 'client_credentials' }) })).status, 400)
  t.equal((await call('reactivate', `/api/v1/agents/${agentId}`, { method: 'PATCH', headers: { ...asAdmin, ...JSON_TYPE }, body: JSON.stringify({ status: 'active' }) })).status, 200)

  // revocation of the credential: its secret and its tokens stop
  const lastToken = await token('token before the credential is revoked', { headers: { authorization: basic(agentId, second), ...FORM }, body: form({ grant_type: 'client_credentials' }) })
  t.equal((await call('revoke credential', `/api/v1/agents/${agentId}/credentials/${credentialId}`, { method: 'DELETE', headers: asAdmin })).status, 204)
  t.equal((await call('token with the revoked secret', '/api/v1/token', { method: 'POST', headers: { authorization: basic(agentId, second), ...FORM }, body: form({ grant_type: 'client_credentials' }) })).status, 401)
  t.equal((await call('management with a token of a revoked credential', `/api/v1/agents/${agentId}`, { headers: { authorization: `Bearer ${lastToken}` } })).status, 401)

  // a request Node's HTTP parser refuses, carrying a token: answered without the raw bytes in a log
  const raw = await new Promise<string>((resolve) => {
    const socket = connect(Number(new URL(base).port), '127.0.0.1')
    let received = ''
    socket.on('data', (chunk) => { received += chunk.toString() })
    socket.on('close', () => resolve(received))
    socket.on('error', () => resolve(received))
    socket.write(`GET /api/v1/agents HTTP/1.1\r\nHost: idp.test\r\nAuthorization: Bearer ${adminToken}\r\nX-Broken header\r\n\r\n`)
  })
  exchanges.push({ label: 'malformed request on a raw socket', status: Number(raw.split(' ')[1]), headers: '', body: raw })
  t.match(raw, /^HTTP\/1\.1 400 /, 'a malformed request is a 400')

  // a Redis outage: 503s, error lines with their stacks, while secrets are in flight
  await redis.stop()
  const during = await call('token during a Redis outage', '/api/v1/token', { method: 'POST', headers: { authorization: basic(admin.clientId, admin.clientSecret), ...FORM }, body: form({ grant_type: 'client_credentials' }) })
  t.ok(during.status === 503 || during.status === 200, `served or 503 during the outage (${during.status})`)
  if (during.status === 200) tokenValue(during.json().access_token, 'a token issued during the outage', 'token during a Redis outage')
  await redis.start()
  await waitFor('the server to see Redis again', async () => (await fetch(`${base}/health`)).status === 200, 20_000, 200)
  await token('token after the outage', { headers: { authorization: basic(admin.clientId, admin.clientSecret), ...FORM }, body: form({ grant_type: 'client_credentials' }) })
})

// stopped before the scan: SIGTERM drains, so every line and every audit row is written
t.test('the server stops cleanly', async (t) => {
  server.child.kill('SIGTERM')
  const { code } = await server.exited
  t.equal(code, 0, 'exit 0 after SIGTERM')
})

/** The percent-decoded spelling of `text`, wherever a run of %XX decodes. */
function percentDecoded (text: string): string {
  return text.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
    try {
      return decodeURIComponent(run)
    } catch {
      return run
    }
  })
}

let leaks = 0
let scanned = 0
/**
 * Which sensitive values (or pieces of them) `text` shows, as it is and percent-decoded: each with
 * the text around it (the value itself masked), so that a failure says where without repeating it.
 */
function found (place: string, text: string): string[] {
  scanned += text.length
  const results: string[] = []
  for (const entry of sensitive) {
    if (entry.handedOutBy === place) continue
    for (const spelling of [text, percentDecoded(text)]) {
      const hit = [entry.value, ...entry.pieces].find((candidate) => spelling.includes(candidate))
      if (hit === undefined) continue
      const at = spelling.indexOf(hit)
      results.push(`${entry.what} in ${place}: …${spelling.slice(Math.max(0, at - 100), at)}<HIT>${spelling.slice(at + hit.length, at + hit.length + 60)}…`)
      break
    }
  }
  return results
}

t.test('no secret, token or Authorization value anywhere it must not be', async (t) => {
  t.ok(sensitive.length >= 20, `${sensitive.length} sensitive values to look for`)

  // positive controls: the scan finds a value where it legitimately is
  t.ok(found('(control)', bootstrapRun.stdout).some((finding) => finding.startsWith('the bootstrap admin secret in (control)')), 'the scan finds the admin secret in the bootstrap output (its one legitimate place)')
  t.ok(found('(control)', exchanges.find((exchange) => exchange.label === 'rotate')?.body ?? '').length > 0, 'the scan finds the rotated secret in the rotation response')

  const logs = `${server.stdout}\n${server.stderr}`
  const logLines = logs.split('\n').filter(Boolean)
  t.ok(logLines.length >= exchanges.length, `the server wrote ${logLines.length} log lines for ${exchanges.length} requests`)
  t.ok(logLines.some((line) => line.includes('"level":"error"')), 'the outage wrote error lines (the scan covers them)')
  const levels = new Map<string, number>()
  for (const line of logLines) {
    const level = /"level":"(\w+)"/.exec(line)?.[1] ?? '(not JSON)'
    levels.set(level, (levels.get(level) ?? 0) + 1)
  }
  t.comment(`log lines by level: ${[...levels].map(([level, count]) => `${level} ${count}`).join(', ')}`)
  const completed = logLines.filter((line) => line.includes('"msg":"request completed"')).length
  t.ok(completed >= exchanges.length - 1, `a completion line for every request that got through HTTP parsing (${completed})`)
  const inLogs = found('the server\'s stdout and stderr', logs)
  t.same(inLogs, [], 'nothing in the server\'s logs')
  const inBootstrapErrors = found('bootstrap\'s stderr', bootstrapRun.stderr)
  t.same(inBootstrapErrors, [], 'nothing on bootstrap\'s stderr')

  const auditRows = await withDb(databaseUrl, async (db) => (await db.query('SELECT row_to_json(e)::text AS row FROM audit_events e')).rows.map((row: { row: string }) => row.row))
  t.ok(auditRows.length >= 20, `${auditRows.length} audit rows`)
  const inAudit = found('the audit rows', auditRows.join('\n'))
  t.same(inAudit, [], 'nothing in the audit rows')

  const inResponses = exchanges.flatMap((exchange) => found(exchange.label, `${exchange.headers}\n${exchange.body}`)
    .map((finding) => `${finding} (${exchange.status})`))
  t.same(inResponses, [], 'nothing in any response but the one that hands the value out (every error body included)')

  const { stdout: dump } = await execFileAsync(`${PG_BIN}/pg_dump`, ['-h', '127.0.0.1', '-p', new URL(databaseUrl).port || '5432', '-U', 'postgres', '-n', schema, new URL(databaseUrl).pathname.slice(1)],
    { maxBuffer: 256 * 1024 * 1024 })
  t.match(dump, /\$argon2id\$/, 'the dump holds the credential rows (argon2id hashes)')
  const inDump = found(`pg_dump -n ${schema}`, dump)
  t.same(inDump, [], 'nothing in a pg_dump of the schema')

  leaks = inLogs.length + inBootstrapErrors.length + inAudit.length + inResponses.length + inDump.length
})

t.teardown(() => {
  recordFigures({
    part: 'secret-hygiene',
    inputsTried: exchanges.length,
    leaks,
    verdicts: { 'secret hygiene': `${leaks === 0 ? 'ok' : 'FAILED'}: ${sensitive.length} values, ${leaks} found in logs (trace), audit rows, ${exchanges.length} responses, pg_dump (${(scanned / 1e6).toFixed(1)} MB scanned)` }
  })
})
