import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { chown, mkdir, mkdtemp, rm, stat } from 'node:fs/promises'
import { createConnection } from 'node:net'
import { freePort } from '../../lib/net.js'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { projectRoot } from '../../lib/paths.js'

/**
 * Private PostgreSQL and Redis instances for outage tests (the shared ones on 5432/6379 must never
 * be stopped: other test files use them in parallel), plus the process helpers the tests that run
 * the compiled server share. Everything started here is stopped in t.teardown, and killed on
 * process exit should the teardown never run.
 */

interface Tap { teardown (fn: () => unknown): void }

const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin'
const execFileAsync = promisify(execFile)

async function command (file: string, args: string[]): Promise<string> {
  try {
    return (await execFileAsync(file, args, { encoding: 'utf8', timeout: 120_000, cwd: projectRoot })).stdout
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string, stderr?: string }
    throw new Error(`${file} ${args.join(' ')} failed: ${stderr || stdout || (error as Error).message}`)
  }
}

// chosen below the ephemeral range, so a stopped private service gets its port back (see freePort)
export { freePort as sparePort }

/**
 * Polls `probe` until it returns true; a throwing probe counts as "not yet". The deadline only
 * turns a hang into a named failure: it is generous, since a busy CI machine may be slow.
 */
export async function waitFor (what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 60_000, intervalMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let lastError: unknown
  for (;;) {
    try {
      if (await probe()) return
    } catch (error) {
      lastError = error
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError === undefined ? '' : `: ${String(lastError)}`}`)
    }
    await sleep(intervalMs)
  }
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export async function isListening (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    socket.setTimeout(500)
    socket.once('connect', () => { socket.destroy(); resolve(true) })
    socket.once('timeout', () => { socket.destroy(); resolve(false) })
    socket.once('error', () => resolve(false))
  })
}

/** Every process below `pid`, from /proc (children first seen, then theirs). */
export function descendants (pid: number): number[] {
  const children = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue // exited meanwhile
    }
    // "pid (comm) state ppid …": comm may contain spaces and parentheses, so parse after the last ')'
    const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    children.set(parent, [...(children.get(parent) ?? []), Number(entry)])
  }
  const found: number[] = []
  const queue = [pid]
  while (queue.length > 0) {
    for (const child of children.get(queue.shift() as number) ?? []) {
      found.push(child)
      queue.push(child)
    }
  }
  return found
}

export function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

function signal (pids: number[], name: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, name)
    } catch {
      // already gone
    }
  }
}

export interface PrivatePostgres {
  port: number
  /** postgres://postgres@127.0.0.1:port/postgres (trust authentication) */
  url: string
  start (): Promise<void>
  /** fast shutdown: connected clients are disconnected, new connections are refused */
  stop (): Promise<void>
  /** SIGSTOP the postmaster and every backend: TCP connections are accepted but nothing answers */
  freeze (): void
  thaw (): void
}

/** initdb + pg_ctl start of a throwaway cluster on a spare port, run as the postgres user. */
export async function startPrivatePostgres (t: Tap): Promise<PrivatePostgres> {
  const dir = await mkdtemp(join(tmpdir(), 'agentidp-pg-'))
  const data = join(dir, 'data')
  const port = await freePort()
  let running = false
  let frozen: number[] = []

  const asPostgres = (binary: string, args: string[]) =>
    command('runuser', ['-u', 'postgres', '--', join(PG_BIN, binary), ...args])
  const postmasterPid = () => Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0])
  const isReady = () => command(join(PG_BIN, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(port), '-t', '1']).then(() => true, () => false)

  function killOnExit (): void {
    signal(frozen, 'SIGCONT')
    // SIGQUIT = immediate shutdown; exit handlers must be synchronous, so no pg_ctl here
    if (running) {
      try {
        process.kill(postmasterPid(), 'SIGQUIT')
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true })
  }
  process.on('exit', killOnExit)
  t.teardown(async function removePrivatePostgres () {
    process.removeListener('exit', killOnExit)
    service.thaw()
    if (running) await asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {})
    running = false
    await rm(dir, { recursive: true, force: true })
  })

  const service: PrivatePostgres = {
    port,
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async start () {
      await asPostgres('pg_ctl', ['-D', data, '-l', join(dir, 'server.log'), '-w', '-t', '30', 'start',
        '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`])
      running = true
      await waitFor(`private PostgreSQL on port ${port}`, isReady)
    },
    async stop () {
      await asPostgres('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop'])
      running = false
      await waitFor(`private PostgreSQL on port ${port} to stop`, async () => !(await isReady()))
    },
    freeze () {
      const postmaster = postmasterPid()
      frozen = [postmaster, ...descendants(postmaster)]
      signal(frozen, 'SIGSTOP')
    },
    thaw () {
      signal(frozen, 'SIGCONT')
      frozen = []
    }
  }

  const [uid, gid] = await Promise.all([command('id', ['-u', 'postgres']), command('id', ['-g', 'postgres'])])
  await chown(dir, Number(uid), Number(gid))
  await asPostgres('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'])
  await service.start()
  return service
}

export interface PrivateRedis {
  port: number
  url: string
  start (): Promise<void>
  stop (): Promise<void>
}

/** PING over a raw socket: true when a Redis answers +PONG on 127.0.0.1:port. */
async function redisPing (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    socket.setTimeout(500)
    socket.once('connect', () => socket.write('PING\r\n'))
    socket.once('data', (reply) => { socket.destroy(); resolve(reply.toString().startsWith('+PONG')) })
    socket.once('timeout', () => { socket.destroy(); resolve(false) })
    socket.once('error', () => resolve(false))
  })
}

/** A redis-server child process on a spare port, without persistence; restartable on the same port. */
export async function startPrivateRedis (t: Tap): Promise<PrivateRedis> {
  const port = await freePort()
  let child: ChildProcess | undefined
  let output = ''

  const killOnExit = () => { child?.kill('SIGKILL') }
  process.on('exit', killOnExit)
  t.teardown(async function removePrivateRedis () {
    process.removeListener('exit', killOnExit)
    await service.stop()
  })

  const service: PrivateRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async start () {
      output = ''
      const started = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
        { stdio: ['ignore', 'pipe', 'pipe'] })
      const keep = (chunk: Buffer) => { output = (output + chunk.toString()).slice(-4000) }
      started.stdout.on('data', keep)
      started.stderr.on('data', keep)
      child = started
      await waitFor(`private Redis on port ${port}`, async () => {
        if (started.exitCode !== null) throw new Error(`redis-server exited (${started.exitCode}): ${output}`)
        return await redisPing(port)
      })
    },
    async stop () {
      const running = child
      child = undefined
      if (running === undefined || running.exitCode !== null || running.signalCode !== null) return
      await new Promise((resolve) => {
        running.once('exit', resolve)
        running.kill('SIGTERM')
      })
    }
  }
  await service.start()
  return service
}

export interface RunningProcess {
  child: ChildProcess
  readonly stdout: string
  readonly stderr: string
  exited: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
}

/**
 * Spawns a process in its own process group with exactly `env` (nothing inherited); teardown kills
 * the whole group if it is still running, so grandchildren (npm → sh → node) never outlive a test.
 */
export function startProcess (t: Tap, file: string, args: string[], options: { env: Record<string, string | undefined>, cwd?: string }): RunningProcess {
  const env = Object.fromEntries(Object.entries(options.env).filter((entry): entry is [string, string] => entry[1] !== undefined))
  const child = spawn(file, args, { env, cwd: options.cwd ?? projectRoot, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  let stdout = ''
  let stderr = ''
  child.stdout?.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr?.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const exited = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, name) => resolve({ code, signal: name }))
  })
  const killGroup = () => { try { process.kill(-(child.pid as number), 'SIGKILL') } catch {} }
  process.on('exit', killGroup)
  t.teardown(function killProcessGroup () {
    process.removeListener('exit', killGroup)
    killGroup()
  })
  return {
    child,
    get stdout () { return stdout },
    get stderr () { return stderr },
    exited
  }
}

/** Runs a command to completion (killed after `timeoutMs`) and returns its exit code and output. */
export async function runProcess (t: Tap, file: string, args: string[], options: { env: Record<string, string | undefined>, cwd?: string, timeoutMs?: number }) {
  const running = startProcess(t, file, args, options)
  const timer = setTimeout(() => { try { process.kill(-(running.child.pid as number), 'SIGKILL') } catch {} }, options.timeoutMs ?? 60_000)
  const { code, signal: killedBy } = await running.exited
  clearTimeout(timer)
  return { code, signal: killedBy, stdout: running.stdout, stderr: running.stderr }
}

/** The variables every child needs to find node and npm; nothing else from this process leaks in. */
export function baseEnv (): Record<string, string | undefined> {
  return { PATH: process.env.PATH, HOME: process.env.HOME }
}

export const compiledServer = join(projectRoot, 'dist', 'server.js')

const BUILD_INPUTS = ['.', 'plugins', 'routes', 'services', 'repositories', 'schemas', 'cli', 'lib']

function newestSource (): number {
  let newest = 0
  const visit = (directory: string, recurse: boolean) => {
    for (const entry of readdirSync(directory, { withFileTypes: true })) {
      const path = join(directory, entry.name)
      if (entry.isDirectory() && recurse) visit(path, true)
      else if (entry.isFile() && entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs)
    }
  }
  for (const input of BUILD_INPUTS) visit(join(projectRoot, input), input !== '.')
  for (const file of ['tsconfig.json', 'tsconfig.build.json', 'package.json']) newest = Math.max(newest, statSync(join(projectRoot, file)).mtimeMs)
  return newest
}

/**
 * The process tests run the compiled server, as operators do. dist/ is rebuilt with `npm run build`
 * when it is missing or older than any source; test files run in parallel, so the check and the
 * build happen under a lock (an atomic mkdir) and nobody runs a half-written dist/.
 */
export async function ensureBuild (): Promise<void> {
  const lock = join(tmpdir(), `agentidp-build-${createHash('sha256').update(projectRoot).digest('hex').slice(0, 12)}.lock`)
  await waitFor('the build lock', async () => {
    try {
      await mkdir(lock)
      return true
    } catch {
      // a lock left by a killed test run is broken after two minutes
      const age = Date.now() - (await stat(lock).then((info) => info.mtimeMs, () => Date.now()))
      if (age > 120_000) await rm(lock, { recursive: true, force: true })
      return false
    }
  }, 180_000, 200)
  try {
    const built = await stat(compiledServer).then((info) => info.mtimeMs, () => 0)
    if (built < newestSource()) await command('npm', ['run', '-s', 'build'])
  } finally {
    await rm(lock, { recursive: true, force: true })
  }
}
