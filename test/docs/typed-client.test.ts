import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { projectRoot } from '../../lib/paths.js'
import { build } from '../helper.js'
import { bootstrap } from '../support/oauth-flow.js'
import { sparePort } from '../support/private-services.js'

/**
 * A client typed by the live document (issue 14): openapi-typescript turns /docs/json into
 * examples/generated/agentidp.ts (git-ignored), `tsc --noEmit` checks examples/client.ts against
 * it — which holds only while the component names it uses are stable (a document with Agent renamed
 * must not compile) — and the example then runs against the server: registers an agent, mints a
 * credential, gets a token and introspects it.
 */
const run = promisify(execFile)
const bin = (name: string) => join(projectRoot, 'node_modules', '.bin', name)
const examples = join(projectRoot, 'examples')
const generated = join(examples, 'generated')

/** openapi-typescript on `document`, into generated/agentidp.ts */
async function generateTypes (document: string): Promise<void> {
  await mkdir(generated, { recursive: true })
  const input = join(generated, 'openapi.json')
  await writeFile(input, document)
  await run(bin('openapi-typescript'), [input, '--output', join(generated, 'agentidp.ts')], { cwd: projectRoot })
}

async function typeCheck (): Promise<{ code: number, output: string }> {
  try {
    const { stdout } = await run(bin('tsc'), ['--noEmit', '-p', join(examples, 'tsconfig.json')], { cwd: projectRoot })
    return { code: 0, output: stdout }
  } catch (error) {
    const failed = error as { code?: number, stdout?: string, stderr?: string }
    return { code: failed.code ?? 1, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` }
  }
}

t.setTimeout(300_000)
const port = await sparePort()
const issuer = `http://127.0.0.1:${port}`
const app = await build(t, { env: { ISSUER_URL: issuer } })
await app.listen({ port, host: '127.0.0.1' })
const document = (await app.inject({ method: 'GET', url: '/docs/json' })).body

// one after the other: both write generated/agentidp.ts
t.test('with the component renamed, the example does not compile (the check has teeth)', async (t) => {
  await generateTypes(document.replaceAll('"Agent"', '"AgentRenamed"').replaceAll('#/components/schemas/Agent"', '#/components/schemas/AgentRenamed"'))
  const result = await typeCheck()
  t.not(result.code, 0, 'tsc fails')
  t.match(result.output, /Agent/, result.output.split('\n')[0])
})

t.test('openapi-typescript on the live document, then tsc --noEmit on examples/client.ts', async (t) => {
  await generateTypes(document)
  const result = await typeCheck()
  t.equal(result.code, 0, result.output || 'compiles')
})

t.test('the example runs against the server: registers, mints a credential, gets a token, introspects it', async (t) => {
  const admin = await bootstrap(app.databaseUrl)
  const { stdout } = await run(process.execPath, [join(examples, 'client.ts')], {
    cwd: projectRoot,
    env: { ...process.env, AGENTIDP_URL: issuer, CLIENT_ID: admin.clientId, CLIENT_SECRET: admin.clientSecret }
  })
  const steps = stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>)
  t.same(steps.map((step) => step.step), ['registered', 'credential', 'token', 'introspected'])
  t.equal(steps[3].active, true, 'the token is active')
  t.equal(steps[3].sub, steps[0].agentId, 'and belongs to the registered agent')
  t.equal(steps[2].scope, 'docs:read')
})
