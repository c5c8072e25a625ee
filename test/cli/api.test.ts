import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { createSchema, testEnv } from '../helper.js'
import { ensureBuild, sparePort, startProcess, waitFor } from '../support/private-services.js'
import { agentidp, compiledCli, json, type CliResult } from '../support/cli.js'

/**
 * The API commands of `agentidp` against a running server (`agentidp serve`, the compiled one, on
 * a schema of its own): each command once succeeding and once failing, with its exit code;
 * `--output json` (the default when piped) parses; server errors are the problem's title/detail
 * (or the OAuth error) on stderr; the client secret the commands act with is never printed.
 */
// a server and some sixty command processes, each a node start-up: on a busy 2-core machine far beyond .taprc's 120 s
t.setTimeout(600_000)
await ensureBuild()
const { databaseUrl } = await createSchema(t)
const work = await mkdtemp(join(tmpdir(), 'agentidp-cli-api-'))
t.teardown(() => rm(work, { recursive: true, force: true }))

const port = await sparePort()
const url = `http://127.0.0.1:${port}`
const server = startProcess(t, process.execPath, [compiledCli, 'serve'], {
  env: {
    ...testEnv(databaseUrl),
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    HOST: '127.0.0.1',
    PORT: String(port),
    ISSUER_URL: url,
    // the refusals below are deliberate; the limits have their own tests
    RATE_LIMIT_AUTH_FAILURES_PER_IP: '0',
    RATE_LIMIT_BEARER_FAILURES_PER_IP: '0'
  }
})
await waitFor(`agentidp serve on port ${port}`, async () => {
  if (server.child.exitCode !== null) throw new Error(`exited ${server.child.exitCode}: ${server.stderr}`)
  const response = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(2000) })
  await response.arrayBuffer()
  return response.status === 200
}, 60_000, 200)

// the first admin, its secret filed rather than printed
const adminFile = join(work, 'admin.json')
const bootstrapped = await agentidp(t, ['bootstrap', '--email', 'cli-admin@example.com', '--output-file', adminFile], { env: { DATABASE_URL: databaseUrl } })
const admin = JSON.parse(await readFile(adminFile, 'utf8')) as { agentId: string, clientId: string, clientSecret: string }
const asAdmin = { AGENTIDP_URL: url, AGENTIDP_CLIENT_ID: admin.clientId, AGENTIDP_CLIENT_SECRET: admin.clientSecret }
const outputs: CliResult[] = [bootstrapped]

/** `agentidp …` as the admin (or with `env`), every output kept for the secret scan at the end. */
async function run (t: Test, args: string[], env: Record<string, string | undefined> = asAdmin, input?: string): Promise<CliResult> {
  const result = await agentidp(t, args, { env, input })
  outputs.push(result)
  return result
}

function refused (t: Test, result: CliResult, code: number, stderr: RegExp): void {
  t.equal(result.code, code, `exit ${code}`, { stderr: result.stderr })
  t.equal(result.stdout, '', 'nothing on stdout')
  t.match(result.stderr, stderr)
  t.equal(result.stderr.trim().split('\n').length, 1, 'one line on stderr')
}

let seq = 0
const createArgs = (overrides: Record<string, string> = {}) => {
  seq += 1
  const options = { email: `cli-agent-${seq}@example.com`, 'agent-type': 'summarizer', 'agent-version': '1.0.0', capabilities: 'agents:read', owner: 'team-cli', 'deployment-env': 'staging', ...overrides }
  return ['agents', 'create', ...Object.entries(options).flatMap(([name, value]) => [`--${name}`, value])]
}

t.test('bootstrap --output-file: the secret goes into a 0600 file, stdout says where', async (t) => {
  t.equal(bootstrapped.code, 0, { stderr: bootstrapped.stderr })
  t.same(json(bootstrapped), { agentId: admin.agentId, clientId: admin.clientId, credentialsFile: adminFile })
  t.equal((await stat(adminFile)).mode & 0o777, 0o600)
  t.match(admin.clientSecret, /^sk_live_/)

  const again = await run(t, ['bootstrap', '--email', 'cli-admin@example.com', '--output-file', join(work, 'second.json')], { DATABASE_URL: databaseUrl })
  refused(t, again, 5, /cli-admin@example\.com already exists/)
  await t.rejects(stat(join(work, 'second.json')), 'no file is left behind when nothing was created')

  const exists = await run(t, ['bootstrap', '--email', 'other-admin@example.com', '--output-file', adminFile], { DATABASE_URL: databaseUrl })
  refused(t, exists, 3, /already exists; choose another file/)
})

t.test('agents create: 0 with the agent; a duplicate email 5, a malformed version 3', async (t) => {
  const created = await run(t, createArgs({ email: 'dup@example.com' }))
  t.equal(created.code, 0, { stderr: created.stderr })
  const agent = json<{ agentId: string, status: string, email: string }>(created)
  t.equal(agent.email, 'dup@example.com')
  t.equal(agent.status, 'active')

  refused(t, await run(t, createArgs({ email: 'dup@example.com' })), 5, /AGENT_ALREADY_EXISTS, HTTP 409/)
  refused(t, await run(t, createArgs({ 'agent-version': 'one' })), 3, /VALIDATION_ERROR, HTTP 400/)
})

t.test('agents list: 0 with {data, nextCursor}, --all follows the cursor, a table on request; wrong credentials 3', async (t) => {
  for (let n = 0; n < 3; n += 1) t.equal((await run(t, createArgs({ owner: 'team-list' }))).code, 0)
  const page = await run(t, ['agents', 'list', '--owner', 'team-list', '--limit', '2'])
  t.equal(page.code, 0)
  const first = json<{ data: Array<{ owner: string }>, nextCursor: string | null }>(page)
  t.equal(first.data.length, 2)
  t.type(first.nextCursor, 'string')
  const all = json<{ data: unknown[], nextCursor: null }>(await run(t, ['agents', 'list', '--owner', 'team-list', '--limit', '2', '--all']))
  t.equal(all.data.length, 3, '--all: every page')
  t.equal(all.nextCursor, null)

  const table = await run(t, ['agents', 'list', '--owner', 'team-list', '--output', 'table'])
  t.equal(table.code, 0)
  t.match(table.stdout, /^agentId\s+email\s+status\s+agentType/)
  t.equal(table.stdout.trim().split('\n').length, 4, 'a header and a row per agent')

  refused(t, await run(t, ['agents', 'list'], { ...asAdmin, AGENTIDP_CLIENT_SECRET: 'sk_live_wrong' }), 3, /^invalid_client: .*\(HTTP 401\)/)
})

t.test('agents get / suspend / reactivate / decommission: 0 each; unknown agent 4; decommissioned twice 5', async (t) => {
  const { agentId } = json<{ agentId: string }>(await run(t, createArgs()))
  const unknown = '00000000-0000-4000-8000-000000000000'

  t.equal(json<{ agentId: string }>(await run(t, ['agents', 'get', agentId])).agentId, agentId)
  refused(t, await run(t, ['agents', 'get', unknown]), 4, /Not Found: agent .* not found \(AGENT_NOT_FOUND, HTTP 404\)/)

  t.equal(json<{ status: string }>(await run(t, ['agents', 'suspend', agentId])).status, 'suspended')
  refused(t, await run(t, ['agents', 'suspend', unknown]), 4, /AGENT_NOT_FOUND/)

  t.equal(json<{ status: string }>(await run(t, ['agents', 'reactivate', agentId])).status, 'active')
  refused(t, await run(t, ['agents', 'reactivate', unknown]), 4, /AGENT_NOT_FOUND/)

  const decommissioned = await run(t, ['agents', 'decommission', agentId])
  t.equal(decommissioned.code, 0)
  t.same(json(decommissioned), { agentId, status: 'decommissioned' })
  refused(t, await run(t, ['agents', 'decommission', agentId]), 5, /AGENT_ALREADY_DECOMMISSIONED, HTTP 409/)
  t.equal(json<{ status: string }>(await run(t, ['agents', 'get', agentId])).status, 'decommissioned')
})

t.test('credentials generate / list / rotate / revoke: 0 each; failures 4 and 5', async (t) => {
  const { agentId } = json<{ agentId: string }>(await run(t, createArgs()))
  const unknown = '00000000-0000-4000-8000-000000000000'

  const generated = await run(t, ['credentials', 'generate', agentId])
  t.equal(generated.code, 0, { stderr: generated.stderr })
  const credential = json<{ credentialId: string, clientSecret: string }>(generated)
  t.match(credential.clientSecret, /^sk_live_/, 'the new secret is shown once')
  refused(t, await run(t, ['credentials', 'generate', unknown]), 4, /AGENT_NOT_FOUND/)

  const filed = join(work, 'credential.json')
  const toFile = await run(t, ['credentials', 'generate', agentId, '--output-file', filed])
  t.equal(toFile.code, 0)
  const shown = json<Record<string, unknown>>(toFile)
  t.notOk('clientSecret' in shown, 'with --output-file the secret is not on stdout')
  t.equal(shown.credentialsFile, filed)
  t.equal((await stat(filed)).mode & 0o777, 0o600)
  t.match(JSON.parse(await readFile(filed, 'utf8')).clientSecret, /^sk_live_/)

  const listed = json<{ data: Array<Record<string, unknown>> }>(await run(t, ['credentials', 'list', agentId]))
  t.equal(listed.data.length, 2)
  t.ok(listed.data.every((entry) => !('clientSecret' in entry)), 'a list never carries secrets')
  refused(t, await run(t, ['credentials', 'list', unknown]), 4, /AGENT_NOT_FOUND/)

  const rotated = json<{ credentialId: string, clientSecret: string }>(await run(t, ['credentials', 'rotate', agentId, credential.credentialId]))
  t.equal(rotated.credentialId, credential.credentialId)
  t.not(rotated.clientSecret, credential.clientSecret, 'a new secret')

  const revoked = await run(t, ['credentials', 'revoke', agentId, credential.credentialId])
  t.equal(revoked.code, 0)
  t.same(json(revoked), { agentId, credentialId: credential.credentialId, status: 'revoked' })
  refused(t, await run(t, ['credentials', 'revoke', agentId, credential.credentialId]), 5, /CREDENTIAL_ALREADY_REVOKED/)
  refused(t, await run(t, ['credentials', 'rotate', agentId, credential.credentialId]), 5, /CREDENTIAL_ALREADY_REVOKED/)
})

t.test('token get / introspect / revoke: 0 each; bad credentials, a scope not held, another client\'s token: 3', async (t) => {
  const got = await run(t, ['token', 'get'])
  t.equal(got.code, 0)
  const response = json<{ access_token: string, token_type: string, expires_in: number }>(got)
  t.equal(response.token_type, 'Bearer')
  const token = response.access_token
  const only = await run(t, ['token', 'get', '--access-token-only', '--scope', 'agents:read'])
  t.match(only.stdout, /^eyJ[\w-]+\.[\w-]+\.[\w-]+\n$/, '--access-token-only: the token alone')
  refused(t, await run(t, ['token', 'get'], { ...asAdmin, AGENTIDP_CLIENT_SECRET: 'sk_live_wrong' }), 3, /^invalid_client/)
  refused(t, await run(t, ['token', 'get', '--scope', 'no:such-scope']), 3, /^invalid_scope/)

  const introspected = json<{ active: boolean, sub: string }>(await run(t, ['token', 'introspect', token]))
  t.equal(introspected.active, true)
  t.equal(introspected.sub, admin.agentId)
  t.same(json(await run(t, ['token', 'introspect', '-'], asAdmin, `${token}\n`)), introspected, 'the token read from stdin')
  t.same(json(await run(t, ['token', 'introspect', 'not-a-token'])), { active: false }, 'an invalid token is {active:false}, exit 0')
  refused(t, await run(t, ['token', 'introspect', token], { ...asAdmin, AGENTIDP_CLIENT_SECRET: 'sk_live_wrong' }), 3, /^invalid_client/)

  // another agent, with a credential of its own, may not revoke the admin's token
  const { agentId: otherId } = json<{ agentId: string }>(await run(t, createArgs()))
  const other = json<{ clientSecret: string }>(await run(t, ['credentials', 'generate', otherId]))
  const asOther = { AGENTIDP_URL: url, AGENTIDP_CLIENT_ID: otherId, AGENTIDP_CLIENT_SECRET: other.clientSecret }
  refused(t, await run(t, ['token', 'revoke', token], asOther), 3, /^unauthorized_client/)

  const revoked = await run(t, ['token', 'revoke', '-'], asAdmin, token)
  t.equal(revoked.code, 0, { stderr: revoked.stderr })
  t.same(json(revoked), { revoked: true })
  t.same(json(await run(t, ['token', 'introspect', token])), { active: false }, 'revoked')
})

t.test('audit tail: 0 with the latest events oldest first; an agent without audit:read 3; --follow prints new events until SIGINT (exit 0)', async (t) => {
  const tailed = await run(t, ['audit', 'tail', '--limit', '5'])
  t.equal(tailed.code, 0, { stderr: tailed.stderr })
  const events = tailed.stdout.trim().split('\n').map((line) => JSON.parse(line) as { eventId: string, timestamp: string })
  t.equal(events.length, 5, 'one JSON event per line')
  t.same(events.map((event) => event.timestamp), events.map((event) => event.timestamp).sort(), 'oldest first')

  const { agentId } = json<{ agentId: string }>(await run(t, createArgs()))
  const secret = json<{ clientSecret: string }>(await run(t, ['credentials', 'generate', agentId])).clientSecret
  refused(t, await run(t, ['audit', 'tail'], { AGENTIDP_URL: url, AGENTIDP_CLIENT_ID: agentId, AGENTIDP_CLIENT_SECRET: secret }), 3, /FORBIDDEN, HTTP 403/)

  const follow = startProcess(t, process.execPath, [compiledCli, 'audit', 'tail', '--follow', '--limit', '1', '--interval', '0.2', '--agent-id', agentId],
    { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...asAdmin } })
  await waitFor('the first events of audit tail --follow', () => follow.stdout.includes('\n') || follow.child.exitCode !== null, 30_000)
  t.equal(follow.child.exitCode, null, 'still following', { stderr: follow.stderr })
  // the agent gets a token: a token.issued event about it
  t.equal((await run(t, ['token', 'get'], { AGENTIDP_URL: url, AGENTIDP_CLIENT_ID: agentId, AGENTIDP_CLIENT_SECRET: secret })).code, 0)
  await waitFor('the new event in the followed output', () => follow.stdout.includes('"action":"token.issued"'), 30_000)
  follow.child.kill('SIGINT')
  const { code } = await follow.exited
  t.equal(code, 0, 'SIGINT ends --follow with exit 0', { stderr: follow.stderr })
  const followed = follow.stdout.trim().split('\n').map((line) => JSON.parse(line) as { agentId: string, action: string, eventId: string })
  t.ok(followed.every((event) => event.agentId === agentId), 'the filter holds')
  t.equal(new Set(followed.map((event) => event.eventId)).size, followed.length, 'no event twice')
})

t.test('an unreachable server: exit 1, one line naming the URL', async (t) => {
  const closed = await sparePort()
  const result = await run(t, ['agents', 'list'], { ...asAdmin, AGENTIDP_URL: `http://127.0.0.1:${closed}` })
  refused(t, result, 1, new RegExp(`cannot reach the server at http://127\\.0\\.0\\.1:${closed} \\(ECONNREFUSED\\)`))
})

t.test('--client-secret as an argument works, with a warning; --url and --client-id flags win over the variables', async (t) => {
  const result = await run(t, ['agents', 'get', admin.agentId, '--url', url, '--client-id', admin.clientId, '--client-secret', admin.clientSecret],
    { AGENTIDP_URL: 'http://127.0.0.1:9', AGENTIDP_CLIENT_ID: 'nobody' })
  t.equal(result.code, 0, { stderr: result.stderr })
  t.match(result.stderr, /warning: --client-secret is visible in the process list; prefer AGENTIDP_CLIENT_SECRET/)
})

t.test('no command printed the client secret it acted with', async (t) => {
  t.ok(outputs.length > 40, `${outputs.length} runs checked`)
  const leaks = outputs.filter((result) => result.stdout.includes(admin.clientSecret) || result.stderr.includes(admin.clientSecret))
  t.same(leaks, [])
})

t.test('the server stops with SIGTERM, exit 0', async (t) => {
  server.child.kill('SIGTERM')
  t.equal((await server.exited).code, 0)
})
