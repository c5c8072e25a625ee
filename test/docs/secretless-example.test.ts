import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { projectRoot } from '../../lib/paths.js'
import { build } from '../helper.js'
import { accessToken, bootstrapClient, registerClient } from '../routes/oauth/support.js'
import { sparePort } from '../support/private-services.js'

/**
 * The README's worked examples of "Agents without secrets" run as written against a listening
 * server: examples/secretless.mjs (all three paths), and the by-hand openssl + curl block
 * (private_key_jwt and the jwt-bearer grant; its last command needs a pod's token file).
 */
const run = promisify(execFile)
t.setTimeout(300_000)
const port = await sparePort()
const issuer = `http://127.0.0.1:${port}`
const app = await build(t, { env: { ISSUER_URL: issuer } })
await app.listen({ port, host: '127.0.0.1' })
const admin = await bootstrapClient(app)

t.test('examples/secretless.mjs obtains tokens by private_key_jwt, by the jwt-bearer grant and by a federated platform token', async (t) => {
  const { stdout } = await run(process.execPath, [join(projectRoot, 'examples/secretless.mjs')], {
    cwd: projectRoot, env: { ...process.env, IDP: issuer, ADMIN_ID: admin.agentId, ADMIN_SECRET: admin.secret }
  })
  const steps = stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
  t.same(steps.map((step) => step.step), [
    'agent registered', 'key registered', 'private_key_jwt', 'jwt-bearer (own key)', 'cluster trusted', 'jwt-bearer (federated)', 'client_assertion (federated)', 'introspected'
  ])
  t.same(steps[0].authMethods, ['private_key_jwt'])
  for (const step of steps.slice(2, 7).filter((entry) => entry.scope !== undefined)) t.equal(step.scope, 'docs:read', `${String(step.step)}: a token`)
  t.match(steps.at(-1), { active: true, sub: steps[0].agentId, client_id: steps[0].agentId })
})

t.test('the README\'s by-hand block registers an RSA key with openssl and obtains tokens with the assertions it signs', async (t) => {
  const readme = await readFile(join(projectRoot, 'README.md'), 'utf8')
  const section = readme.slice(readme.indexOf('## Agents without secrets'))
  const block = /The same by hand[\s\S]*?```bash\n([\s\S]*?)```/.exec(section)?.[1]
  if (block === undefined) throw new Error('README: no by-hand block under "Agents without secrets"')
  // the last command reads a pod's token file: everything before it runs here as written
  const runnable = block.slice(0, block.indexOf('# 3.'))
  const agent = await registerClient(app, admin.headers, { capabilities: ['docs:read'] })
  const directory = await mkdtemp(join(tmpdir(), 'agentidp-readme-'))
  t.teardown(async () => { await rm(directory, { recursive: true, force: true }) })
  const { stdout } = await run('bash', ['-euo', 'pipefail', '-c', runnable], {
    cwd: directory, env: { ...process.env, IDP: issuer, AGENT: agent.agentId, admin: await accessToken(app, admin) }
  })
  const answers = stdout.trim().split(/\n(?=["{])/).map((text) => JSON.parse(text) as unknown)
  t.same(answers, ['agent-key-1', { token_type: 'Bearer', scope: 'docs:read' }, { token_type: 'Bearer', scope: 'docs:read' }])
})
