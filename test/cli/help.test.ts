import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'
import type { Command } from 'commander'
import { projectRoot } from '../../lib/paths.js'
import { buildProgram } from '../../cli/program.js'
import { baseEnv, compiledServer, ensureBuild } from '../support/private-services.js'
import { agentidp, compiledCli } from '../support/cli.js'

/**
 * The command line's surface: --help on every command and subcommand (exit 0, usage on stdout),
 * --version from package.json, usage errors exit 2 with one complaint on stderr, and the bin
 * entry that `npx agentidp` and the image use. No database needed.
 */
// some fifty command processes, each a node start-up: on a busy 2-core machine far beyond .taprc's 120 s
t.setTimeout(600_000)
await ensureBuild()
const packageJson = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { version: string, bin: Record<string, string> }

/** Every command path of the program ([] is the program itself). */
function commandPaths (command: Command, path: string[] = []): string[][] {
  return [path, ...command.commands.flatMap((sub) => commandPaths(sub, [...path, sub.name()]))]
}

const paths = commandPaths(buildProgram())

t.test('the program has the commands of the issue', async (t) => {
  const names = paths.map((path) => path.join(' '))
  for (const expected of ['serve', 'dev', 'migrate up', 'migrate down', 'migrate status', 'keys generate', 'bootstrap',
    'audit prune', 'audit verify', 'audit export', 'audit tail', 'agents list', 'agents get', 'agents create', 'agents suspend',
    'agents reactivate', 'agents decommission', 'credentials generate', 'credentials list', 'credentials rotate',
    'credentials revoke', 'token get', 'token introspect', 'token revoke']) {
    t.ok(names.includes(expected), expected)
  }
})

t.test('--help on every command and subcommand: exit 0, its usage on stdout, nothing on stderr', async (t) => {
  // a few at a time: each is a node process
  const queue = [...paths]
  const worker = async () => {
    for (let path = queue.shift(); path !== undefined; path = queue.shift()) {
      const result = await agentidp(t, [...path, '--help'])
      const name = ['agentidp', ...path].join(' ')
      t.equal(result.code, 0, `${name} --help exits 0`)
      t.match(result.stdout, new RegExp(`^Usage: ${name.replace(/ /g, ' ')}( |$)`, 'm'), `${name} --help shows its usage`)
      t.equal(result.stderr, '', `${name} --help writes nothing on stderr`)
    }
  }
  await Promise.all([worker(), worker(), worker()])
})

t.test('the top-level help documents the exit codes and the variables', async (t) => {
  const result = await agentidp(t, ['--help'])
  t.match(result.stdout, /Exit codes: 0 ok, 1 failure/)
  t.match(result.stdout, /AGENTIDP_URL/)
  t.match(result.stdout, /AGENTIDP_CLIENT_SECRET/)
  t.notMatch(result.stdout, /audit-prune|^\s+start\b/m, 'the legacy spellings stay out of the help')
})

t.test('--version and -V print package.json\'s version', async (t) => {
  for (const flag of ['--version', '-V']) {
    const result = await agentidp(t, [flag])
    t.equal(result.code, 0)
    t.equal(result.stdout, `${packageJson.version}\n`)
  }
})

t.test('usage errors exit 2 with the complaint on stderr and nothing on stdout', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [[], /Usage: agentidp/],
    [['no-such-command'], /unknown command 'no-such-command'/],
    [['migrate'], /Usage: agentidp migrate/],
    [['migrate', 'sideways'], /unknown command 'sideways'/],
    [['migrate', 'status', '--no-such-option'], /unknown option '--no-such-option'/],
    [['migrate', 'down', '--count', 'zero'], /a positive integer is required/],
    [['agents', 'get', 'not-a-uuid'], /a UUID is required/],
    [['agents', 'list', '--output', 'yaml'], /Allowed choices are table, json/],
    [['bootstrap'], /required option '--email <address>' not specified/],
    [['bootstrap', '--email', 'not-an-email'], /an email address is required/],
    [['audit', 'export', '--since', 'yesterday'], /ISO 8601 instant/],
    [['keys', 'generate', '--format', 'der'], /Allowed choices are env, pem/],
    [['keys', 'generate', '--alg', 'HS256'], /Allowed choices are RS256, ES256, EdDSA/]
  ]
  for (const [args, complaint] of cases) {
    const result = await agentidp(t, args)
    t.equal(result.code, 2, `agentidp ${args.join(' ')} exits 2`, { stderr: result.stderr })
    t.match(result.stderr, complaint)
    t.equal(result.stdout, '', 'nothing on stdout')
  }
})

t.test('API commands without client credentials are a usage error that names the variables', async (t) => {
  const result = await agentidp(t, ['agents', 'list'], { env: { AGENTIDP_URL: 'http://127.0.0.1:9' } })
  t.equal(result.code, 2)
  t.match(result.stderr, /AGENTIDP_CLIENT_ID and AGENTIDP_CLIENT_SECRET/)
})

t.test('package.json\'s bin: agentidp is the compiled entry, executable, with a node shebang', async (t) => {
  t.equal(join(projectRoot, packageJson.bin.agentidp), compiledCli)
  t.ok((statSync(compiledCli).mode & 0o111) !== 0, 'executable')
  t.match(readFileSync(compiledCli, 'utf8'), /^#!\/usr\/bin\/env node\n/)
  // run as a file, by its shebang (as a bin link runs it)
  const { stdout } = await promisify(execFile)(compiledCli, ['--version'], { env: { PATH: process.env.PATH } })
  t.equal(stdout.trim(), packageJson.version)
})

t.test('npx agentidp runs the bin from the repository', async (t) => {
  const { stdout } = await promisify(execFile)('npx', ['--no-install', 'agentidp', '--version'], { cwd: projectRoot, env: { ...baseEnv(), npm_config_update_notifier: 'false' }, timeout: 60_000 })
  t.equal(stdout.trim(), packageJson.version)
})

t.test('node dist/server.js takes the same commands (serve by default)', async (t) => {
  const { stdout } = await promisify(execFile)(process.execPath, [compiledServer, '--version'], { env: { PATH: process.env.PATH } })
  t.equal(stdout.trim(), packageJson.version)
  const help = await promisify(execFile)(process.execPath, [compiledServer, 'bootstrap', '--help'], { env: { PATH: process.env.PATH } })
  t.match(help.stdout, /--output-file <file>/)
})
