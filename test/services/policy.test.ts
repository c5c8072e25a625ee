import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { build, createSchema, seedAgent, testEnv } from '../helper.js'
import { bundledPolicyDir } from '../../lib/paths.js'
import {
  decide, loadPolicy, scopesForClientHost, WASM_ENTRYPOINT, wasmEngine, wasmRuntime, type LoadedWasmPolicy, type PolicyData, type PolicyInput
} from '../../services/policy.js'
import { baseEnv, compiledServer, ensureBuild, runProcess } from '../support/private-services.js'
import { auditByActor } from '../routes/agents/support.js'

const data = JSON.parse(await readFile(join(bundledPolicyDir, 'data', 'scopes.json'), 'utf8')) as PolicyData
const ME = '11111111-1111-4111-8111-111111111111'
const OTHER = '22222222-2222-4222-8222-222222222222'
const PLATFORM = data.platformScopes

function input (action: string, scopes: string[], target: string | null, delegated = false, capabilities?: string[]): PolicyInput {
  return {
    principal: { agentId: ME, scopes, delegated },
    action,
    target: target === null ? null : { agentId: target, ...(capabilities === undefined ? {} : { capabilities }) }
  }
}

t.test('the built-in engine: scope, self-service, 404 for the invisible, 403 for the visible', async (t) => {
  const cases: Array<[string, PolicyInput, ReturnType<typeof decide>]> = [
    ['scope held', input('agents.list', ['agents:read'], null), { allow: true }],
    ['collection without scope: 403', input('agents.list', [], null), { allow: false, reason: 'insufficient_scope', scope: 'agents:read' }],
    ['creation without scope: 403', input('agents.create', ['agents:read'], null), { allow: false, reason: 'insufficient_scope', scope: 'agents:write' }],
    ['self read without scope', input('agents.read', [], ME), { allow: true }],
    ['self credentials without scope', input('credentials.rotate', [], ME), { allow: true }],
    ['delegated token: no self-service (404)', input('agents.read', [], ME, true), { allow: false, reason: 'not_visible', scope: 'agents:read' }],
    ['another agent without any scope: 404', input('agents.read', [], OTHER), { allow: false, reason: 'not_visible', scope: 'agents:read' }],
    ['another agent\'s credentials without any scope: 404', input('credentials.list', ['docs:read'], OTHER), { allow: false, reason: 'not_visible', scope: 'credentials:read' }],
    ['readable but not writable: 403', input('agents.update', ['agents:read'], OTHER), { allow: false, reason: 'insufficient_scope', scope: 'agents:write' }],
    ['credentials visible through credentials:read: 403 on write', input('credentials.revoke', ['credentials:read'], OTHER), { allow: false, reason: 'insufficient_scope', scope: 'credentials:write' }],
    ['own PATCH without agents:write: 403, not self-service', input('agents.update', [], ME), { allow: false, reason: 'insufficient_scope', scope: 'agents:write' }],
    ['write scope with a read scope suffices', input('agents.decommission', ['agents:read', 'agents:write'], OTHER), { allow: true }],
    ['write scope without a read scope: 404 like GET', input('agents.decommission', ['agents:write'], OTHER), { allow: false, reason: 'not_visible', scope: 'agents:write' }],
    ['PATCH with agents:write alone: 404 like GET', input('agents.update', ['agents:write'], OTHER), { allow: false, reason: 'not_visible', scope: 'agents:write' }],
    ['credentials:write alone: another agent\'s credentials are not visible', input('credentials.create', ['credentials:write'], OTHER), { allow: false, reason: 'not_visible', scope: 'credentials:write' }],
    ['credentials:write alone: revoke not visible either', input('credentials.revoke', ['credentials:write'], OTHER), { allow: false, reason: 'not_visible', scope: 'credentials:write' }],
    ['credentials:read lists another agent\'s credentials', input('credentials.list', ['credentials:read'], OTHER), { allow: true }],
    ['tokens:read introspects another agent\'s token', input('tokens.introspect', ['tokens:read'], OTHER), { allow: true }],
    ['agents:write revokes another agent\'s token', input('tokens.revoke', ['agents:write'], OTHER), { allow: true }],
    ['audit needs audit:read, never self-service', input('audit.list', ['agents:read', 'agents:write'], null), { allow: false, reason: 'insufficient_scope', scope: 'audit:read' }],
    ['unknown action denies', input('agents.explode', PLATFORM, null), { allow: false, reason: 'unknown_action', scope: null }]
  ]
  for (const [label, given, expected] of cases) t.same(decide(data, given), expected, label)
})

t.test('the built-in engine: no escalation through credentials, decided on the target\'s capabilities', async (t) => {
  const manager = ['credentials:read', 'credentials:write']
  const escalation = (scope: string): ReturnType<typeof decide> => ({ allow: false, reason: 'privilege_escalation', scope })
  const cases: Array<[string, PolicyInput, ReturnType<typeof decide>]> = [
    ['another agent: its platform capabilities the caller lacks refuse generation, named in order',
      input('credentials.create', manager, OTHER, false, ['audit:read', 'docs:read', 'agents:write']), escalation('agents:write audit:read')],
    ['another agent: rotation likewise', input('credentials.rotate', manager, OTHER, false, ['tokens:read']), escalation('tokens:read')],
    ['another agent: platform capabilities the caller holds, custom ones unchecked',
      input('credentials.create', manager, OTHER, false, ['credentials:read', 'docs:read', 'billing:admin']), { allow: true }],
    ['another agent: revocation only removes power, never an escalation', input('credentials.revoke', manager, OTHER, false, [...PLATFORM]), { allow: true }],
    ['another agent: the scope is checked before the capabilities', input('credentials.create', ['credentials:read'], OTHER, false, ['docs:read']), { allow: false, reason: 'insufficient_scope', scope: 'credentials:write' }],
    ['its own agent: a token covering every capability', input('credentials.create', ['docs:read', 'files:write'], ME, false, ['files:write', 'docs:read']), { allow: true }],
    ['its own agent: a narrowed token cannot mint a full-power secret (custom capabilities count)',
      input('credentials.create', ['docs:read'], ME, false, ['docs:read', 'files:write']), escalation('files:write')],
    ['its own agent: rotation likewise', input('credentials.rotate', ['docs:read'], ME, false, ['docs:read', 'agents:read']), escalation('agents:read')],
    ['its own agent: credentials:write does not lower the bar to platform scopes',
      input('credentials.create', [...PLATFORM], ME, false, [...PLATFORM, 'docs:read']), escalation('docs:read')],
    ['its own agent: revoking with any token', input('credentials.revoke', [], ME, false, ['docs:read', 'agents:write']), { allow: true }],
    ['a delegated token on its subject is another agent\'s caller: platform capabilities checked',
      input('credentials.create', manager, ME, true, ['docs:read', 'agents:write']), escalation('agents:write')],
    ['a delegated token on its subject: custom capabilities unchecked', input('credentials.create', manager, ME, true, ['docs:read']), { allow: true }],
    ['before the row is read (no capabilities in the input) only scope and visibility are decided',
      input('credentials.create', manager, OTHER), { allow: true }],
    ['actions that hand out no secret ignore the capabilities', input('agents.update', ['agents:read', 'agents:write'], OTHER, false, [...PLATFORM]), { allow: true }]
  ]
  for (const [label, given, expected] of cases) t.same(decide(data, given), expected, label)
})


t.test('the built-in engine: a token exchange is allowed when the actor is in the mayAct of the subject or of the previous actor', async (t) => {
  const THIRD = '33333333-3333-4333-8333-333333333333'
  const exchange = (subjectMayAct: string[], previous: { agentId: string, mayAct: string[] }): PolicyInput => ({
    principal: { agentId: ME, scopes: [], delegated: false },
    action: 'tokens.exchange',
    target: { agentId: OTHER },
    delegation: { subject: { agentId: OTHER, mayAct: subjectMayAct }, previous }
  })
  const refused: ReturnType<typeof decide> = { allow: false, reason: 'delegation_refused', scope: null }
  const cases: Array<[string, PolicyInput, ReturnType<typeof decide>]> = [
    ['first hop: named by the subject', exchange([ME], { agentId: OTHER, mayAct: [ME] }), { allow: true }],
    ['first hop: not named', exchange([THIRD], { agentId: OTHER, mayAct: [THIRD] }), refused],
    ['a later hop: named by the previous actor only', exchange([THIRD], { agentId: THIRD, mayAct: [ME] }), { allow: true }],
    ['a later hop: named by the subject only', exchange([ME], { agentId: THIRD, mayAct: [] }), { allow: true }],
    ['a later hop: named by neither', exchange([THIRD], { agentId: THIRD, mayAct: [OTHER] }), refused],
    ['no delegation input: refused, never allowed by default', { ...exchange([ME], { agentId: OTHER, mayAct: [ME] }), delegation: undefined }, refused],
    ['scopes do not matter: every platform scope is not a way in', { ...exchange([], { agentId: OTHER, mayAct: [] }), principal: { agentId: ME, scopes: [...PLATFORM], delegated: false } }, refused]
  ]
  for (const [label, given, expected] of cases) t.same(decide(data, given), expected, label)
})

/** A stand-in for @open-policy-agent/opa-wasm's LoadedPolicy: answers as authz.rego would (via `decide`). */
function fakeWasm (overrides: Partial<LoadedWasmPolicy> = {}): LoadedWasmPolicy {
  let loaded: PolicyData | undefined
  return {
    entrypoints: { [WASM_ENTRYPOINT]: 0, 'agentidp/authz/allow': 1 },
    setData (value) { loaded = value as PolicyData },
    evaluate (given, entrypoint) {
      if (entrypoint !== WASM_ENTRYPOINT || loaded === undefined) throw new Error('wrong entrypoint or no data')
      return [{ result: decide(loaded, given as PolicyInput) }]
    },
    ...overrides
  }
}

t.test('the wasm engine maps OPA result sets to decisions and denies on any evaluation problem', async (t) => {
  const errors: unknown[] = []
  const engine = wasmEngine(fakeWasm(), data, '/p/authz.wasm', (error) => errors.push(error))
  t.equal(engine.kind, 'wasm')
  t.same(engine.decide(input('agents.read', [], OTHER)), { allow: false, reason: 'not_visible', scope: 'agents:read' })
  t.same(engine.decide(input('agents.read', [], ME)), { allow: true })
  t.same(engine.decide(input('agents.update', ['agents:read'], OTHER)), { allow: false, reason: 'insufficient_scope', scope: 'agents:write' })
  t.same(errors, [])

  // odd answers for audit.verify only: the probe at load time (the first action) still gets a good one
  const odd = (answer: () => unknown) => wasmEngine(fakeWasm({
    evaluate: (given) => (given as PolicyInput).action === 'audit.verify' ? answer() : [{ result: { allow: true } }]
  }), data, '/p/authz.wasm', (error) => errors.push(error))
  const denied = { allow: false, reason: 'evaluation_error', scope: null }
  t.same(odd(() => { throw new Error('out of memory') }).decide(input('audit.verify', PLATFORM, null)), denied, 'a throwing evaluation denies')
  t.equal(errors.length, 1, 'and is reported')
  for (const answer of [[], null, undefined, [{}], [{ result: true }], [{ result: { allow: 'yes' } }], [{ result: { allow: false, reason: 'because' } }],
    [{ result: { allow: true } }, { result: { allow: true } }]]) {
    t.same(odd(() => answer).decide(input('audit.verify', PLATFORM, null)), denied, `no decision in ${JSON.stringify(answer)}: denied`)
  }
})

t.test('a wasm policy that cannot work refuses to start', async (t) => {
  t.throws(() => wasmEngine(fakeWasm({ entrypoints: { 'agentidp/authz/allow': 0 } }), data, '/p/authz.wasm'), { name: 'PolicyLoadError', message: /no agentidp\/authz\/decision entrypoint/ })
  t.throws(() => wasmEngine(fakeWasm({ setData: () => { throw new Error('bad data') } }), data, '/p/authz.wasm'), { name: 'PolicyLoadError', message: /rejects the policy data/ })
  t.throws(() => wasmEngine(fakeWasm({ evaluate: () => { throw new Error('trap') } }), data, '/p/authz.wasm'), { name: 'PolicyLoadError', message: /fails to evaluate/ })
})

/** A policy directory of these files, removed when the test file ends. */
async function policyDir (files: Record<string, string | Buffer | null>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'agentidp-policy-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await mkdir(join(dir, 'data'))
  for (const [name, content] of Object.entries(files)) {
    if (content === null) await mkdir(join(dir, name))
    else await writeFile(join(dir, name), content)
  }
  return dir
}

const SCOPES = await readFile(join(bundledPolicyDir, 'data', 'scopes.json'), 'utf8')

t.test('POLICY_DIR: missing, unreadable or invalid policies refuse to start (fail closed)', async (t) => {
  const cases: Array<[string, Record<string, string | Buffer | null>, RegExp]> = [
    ['no policy at all', {}, /scopes\.json is missing/],
    ['scopes.json is not JSON', { 'data/scopes.json': '{"platformScopes": [' }, /is not readable JSON/],
    ['scopes.json unreadable (a directory)', { 'data/scopes.json': null }, /is not readable JSON/],
    ['scopes.json of the wrong shape', { 'data/scopes.json': '{"platformScopes": [], "actions": {}}' }, /is invalid at \/platformScopes/],
    ['a rule with an unknown field', { 'data/scopes.json': '{"platformScopes": ["a:b"], "actions": {"agents.read": {"scope": "a:b", "everyone": true}}}' }, /is invalid/],
    ['authz.wasm is not WebAssembly', { 'data/scopes.json': SCOPES, 'authz.wasm': 'not wasm at all' }, /authz\.wasm is not a valid OPA WebAssembly policy/],
    ['authz.wasm is WebAssembly but not an OPA policy', { 'data/scopes.json': SCOPES, 'authz.wasm': Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]) }, /authz\.wasm is not a valid OPA WebAssembly policy/],
    ['authz.wasm unreadable (a directory)', { 'data/scopes.json': SCOPES, 'authz.wasm': null }, /authz\.wasm is not readable/],
    ['authz.wasm without its data', { 'authz.wasm': 'x' }, /scopes\.json is missing/],
    ['a client metadata host granted a platform scope', { 'data/scopes.json': JSON.stringify({ ...JSON.parse(SCOPES), clientMetadataHosts: { 'chatgpt.com': ['mcp:read', 'agents:write'] } }) }, /grants platform scopes to the client metadata host chatgpt\.com: agents:write/],
    ['a client metadata host that is not a host', { 'data/scopes.json': JSON.stringify({ ...JSON.parse(SCOPES), clientMetadataHosts: { 'https://chatgpt.com/': ['mcp:read'] } }) }, /is invalid at \/clientMetadataHosts/]
  ]
  for (const [label, files, message] of cases) {
    const dir = await policyDir(files)
    await t.rejects(loadPolicy(dir), { name: 'PolicyLoadError', message }, label)
  }
  t.equal((await loadPolicy(bundledPolicyDir)).engine.kind, 'builtin', 'the shipped policies/ uses the built-in engine (no authz.wasm is shipped)')
  const granted = await loadPolicy(await policyDir({ 'data/scopes.json': JSON.stringify({ ...JSON.parse(SCOPES), clientMetadataHosts: { 'chatgpt.com': ['mcp:read'] } }) }))
  t.same(scopesForClientHost(granted.data, 'chatgpt.com'), ['mcp:read'], 'a listed host gets its scopes')
  t.same(scopesForClientHost(granted.data, 'evil.example'), [], 'any other none')
  t.same(scopesForClientHost(granted.data, 'constructor'), [], 'not even an inherited member')
  t.same((await loadPolicy(bundledPolicyDir)).data.clientMetadataHosts, {}, 'the shipped policy grants no host anything')
})

t.test('the server process refuses to start on a bad policy: exit 1, one line on stderr, no port bound', async (t) => {
  await ensureBuild()
  const { databaseUrl } = await createSchema(t)
  const dir = await policyDir({ 'data/scopes.json': SCOPES, 'authz.wasm': 'garbage' })
  const run = await runProcess(t, process.execPath, [compiledServer], {
    env: { ...baseEnv(), ...testEnv(databaseUrl), NODE_ENV: 'production', HOST: '127.0.0.1', PORT: '0', POLICY_DIR: dir },
    timeoutMs: 30_000
  })
  t.equal(run.code, 1)
  t.match(run.stderr, /policy .*authz\.wasm is not a valid OPA WebAssembly policy: refusing to start without a valid policy/)
})

t.test('the app on a wasm policy: same answers over HTTP; an evaluation error is a 403 and audited', async (t) => {
  const dir = await policyDir({ 'data/scopes.json': SCOPES, 'authz.wasm': 'stand-in' })
  const real = wasmRuntime.load
  t.teardown(() => { wasmRuntime.load = real })
  wasmRuntime.load = async () => fakeWasm({
    evaluate (given) {
      if ((given as PolicyInput).action === 'audit.verify') throw new Error('trap: unreachable')
      return [{ result: decide(data, given as PolicyInput) }]
    }
  })
  const app = await build(t, { env: { POLICY_DIR: dir } })
  t.equal(app.policy.engine, 'wasm')
  const caller = await seedAgent(app, { capabilities: ['docs:read', 'audit:read'] })
  const other = await seedAgent(app, { capabilities: ['docs:read'] })
  t.equal((await app.inject({ method: 'GET', url: `/api/v1/agents/${caller.agent.agentId}`, headers: caller.headers })).statusCode, 200, 'self-service')
  t.equal((await app.inject({ method: 'GET', url: `/api/v1/agents/${other.agent.agentId}`, headers: caller.headers })).statusCode, 404, 'invisible: 404')
  t.equal((await app.inject({ method: 'GET', url: '/api/v1/agents', headers: caller.headers })).statusCode, 403, 'no scope: 403')
  t.equal((await app.inject({ method: 'GET', url: '/api/v1/audit', headers: caller.headers })).statusCode, 200, 'scope held')
  const broken = await app.inject({ method: 'GET', url: '/api/v1/audit/verify', headers: caller.headers })
  t.equal(broken.statusCode, 403, 'an evaluation error denies')
  const denials = (await auditByActor(app, caller.agent.agentId)).filter((event) => event.action === 'access.denied')
  t.same(denials.map((event) => event.metadata.reason), ['not_visible', 'insufficient_scope', 'evaluation_error'])
})

t.test('authz.rego is the documented source: its package and entrypoint match what the server evaluates', async (t) => {
  const rego = await readFile(join(bundledPolicyDir, 'authz.rego'), 'utf8')
  t.match(rego, /^package agentidp\.authz$/m)
  t.equal(WASM_ENTRYPOINT, 'agentidp/authz/decision')
  t.match(rego, /opa build -t wasm -e agentidp\/authz\/decision/)
  for (const reason of ['unknown_action', 'not_visible', 'insufficient_scope', 'privilege_escalation', 'delegation_refused']) t.match(rego, new RegExp(`"reason": "${reason}"`), `decides ${reason}`)
  for (const field of ['scope', 'selfService', 'visibleWith', 'confersCapabilities', 'platformScopes', 'capabilities', 'delegation', 'mayAct']) t.match(rego, new RegExp(field), `reads the rule's ${field}`)
})
