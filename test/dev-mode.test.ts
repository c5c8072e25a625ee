import { existsSync, readFileSync } from 'node:fs'
import { chmod, cp, mkdtemp, readdir, rm, symlink } from 'node:fs/promises'
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
 * it. Slow (two builds, an initdb): about a minute.
 */
const EXCLUDED = new Set(['node_modules', '.data', 'dist', '.git', '.tap', 'coverage', '.env'])
const STARTUP_MS = 60_000
// two builds and an initdb: on a busy machine this file outlives .taprc's 120 s
t.setTimeout(240_000)

const checkout = await mkdtemp(join(tmpdir(), 'agentidp-dev-'))
t.teardown(() => rm(checkout, { recursive: true, force: true }))
// as root the embedded PostgreSQL runs as the postgres user, which must reach .data/pg (mkdtemp makes 0700)
await chmod(checkout, 0o755)
for (const entry of await readdir(projectRoot)) {
  if (!EXCLUDED.has(entry)) await cp(join(projectRoot, entry), join(checkout, entry), { recursive: true })
}
await symlink(join(projectRoot, 'node_modules'), join(checkout, 'node_modules'), 'dir')

const port = await sparePort()
const base = `http://127.0.0.1:${port}`
const env = { ...baseEnv(), PORT: String(port) }

interface Admin { agentId: string, clientId: string, clientSecret: string }

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

async function status (path: string): Promise<number | null> {
  try {
    return (await fetch(base + path, { signal: AbortSignal.timeout(2000) })).status
  } catch {
    return null
  }
}

async function startDev (t: Test): Promise<{ dev: RunningProcess, startedInMs: number }> {
  const started = Date.now()
  const dev = startProcess(t, 'npm', ['run', 'dev'], { env, cwd: checkout })
  await waitFor(`npm run dev to answer /health on port ${port}`, async () => {
    if (dev.child.exitCode !== null) throw new Error(`npm run dev exited ${dev.child.exitCode}: ${dev.stderr}`)
    return await status('/health') === 200
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

function embeddedPostgres (): { pid: number, port: number } {
  const lines = readFileSync(join(checkout, '.data', 'pg', 'postmaster.pid'), 'utf8').split('\n')
  return { pid: Number(lines[0]), port: Number(lines[3]) }
}

/** SIGINT to the server alone: the embedded PostgreSQL stopping then proves the server stopped it. */
async function interrupt (t: Test, dev: RunningProcess): Promise<void> {
  const postgres = embeddedPostgres()
  t.ok(isAlive(postgres.pid) && await isListening(postgres.port), `the embedded PostgreSQL runs (pid ${postgres.pid}, port ${postgres.port})`)

  process.kill(serverProcess(dev), 'SIGINT')
  const exit = await Promise.race([dev.exited, new Promise((resolve) => setTimeout(resolve, 20_000, 'timeout'))])

  t.same(exit, { code: 0, signal: null }, 'npm run dev exits 0 after SIGINT', { stderr: dev.stderr.slice(-2000) })
  await waitFor('the embedded PostgreSQL to exit', () => !isAlive(postgres.pid), 10_000)
  t.notOk(await isListening(postgres.port), 'the embedded PostgreSQL no longer listens')
  t.notOk(existsSync(join(checkout, '.data', 'pg', 'postmaster.pid')), 'the embedded PostgreSQL shut down cleanly (no postmaster.pid left)')
  t.notOk(await isListening(port), 'the API port is released')
}

let admin: Admin

t.test('on a clean checkout with an empty environment `npm run dev` serves /health and /docs and prints the bootstrap admin once', async (t) => {
  const { dev, startedInMs } = await startDev(t)
  t.ok(startedInMs < STARTUP_MS, `healthy after ${Math.round(startedInMs / 1000)} s`)

  t.equal(await status('/health'), 200, '/health is 200')
  t.equal(await status('/docs'), 200, '/docs is 200')
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

  const tokenEndpoint = existsSync(join(checkout, 'routes', 'oauth', 'token.ts'))
  await t.test('the printed credentials obtain a token that reads the admin itself', {
    skip: tokenEndpoint ? false : 'routes/oauth/token.ts does not exist yet'
  }, async (t) => {
    const basic = Buffer.from(`${encodeURIComponent(admin.clientId)}:${encodeURIComponent(admin.clientSecret)}`).toString('base64')
    const token = await fetch(`${base}/api/v1/token`, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'grant_type=client_credentials'
    })
    const issued = await token.json() as { access_token: string, token_type: string }
    t.equal(token.status, 200, 'POST /api/v1/token is 200', { body: issued })
    t.equal(issued.token_type, 'Bearer')

    const self = await fetch(`${base}/api/v1/agents/${admin.agentId}`, { headers: { authorization: `Bearer ${issued.access_token}` } })
    t.equal(self.status, 200, 'GET /api/v1/agents/{agentId} is 200')
    t.match(await self.json(), { agentId: admin.agentId, status: 'active' })
  })

  await interrupt(t, dev)
})

t.test('a second start on the same .data prints no bootstrap line', async (t) => {
  const { dev } = await startDev(t)

  t.equal(await status('/health'), 200)
  t.same(bootstrapLines(dev.stdout), [], 'no bootstrap JSON line')
  t.notOk(dev.stdout.includes(admin.clientSecret), 'the first secret is not printed again')

  await interrupt(t, dev)
})
