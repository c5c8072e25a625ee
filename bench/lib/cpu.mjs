// CPU time per request, from /proc: utime + stime (fields 14 and 15 of /proc/<pid>/stat, in clock
// ticks) of the measured server (the process line already sums all its threads: libuv's signing
// pool, V8's GC helpers) and of PostgreSQL, sampled before and after each measurement.
//
// PostgreSQL is many processes (one backend per connection plus its writers and autovacuum), so two
// figures are kept:
//   all — every process whose comm is `postgres`: backends, WAL writer, checkpointer, autovacuum.
//         What the load costs the database server as a whole, but on a shared machine it also
//         counts other users' backends.
//   own — only the backends connected to the measured server's sockets (matched through
//         pg_stat_activity.client_port): immune to other users, blind to shared background work.
// Processes that appear during a measurement count from zero (a forked backend starts with no CPU);
// processes that exit during one lose their share and are counted in `gone` so a reader knows.
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'

/** Clock ticks per second (getconf CLK_TCK; 100 on Linux/x86-64). */
export const CLOCK_TICKS = (() => {
  try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100 } catch { return 100 }
})()

/** utime + stime of one process, in ticks, or null if it is gone. */
export function processTicks (pid) {
  let stat
  try { stat = readFileSync(`/proc/${pid}/stat`, 'utf8') } catch { return null }
  // comm (field 2) may hold spaces and parentheses: count fields after its closing parenthesis
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12]) // fields 14 and 15, counted from 3
}

/** Every process named `postgres` (postmaster, backends, background workers). */
export function postgresPids () {
  const pids = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try { if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'postgres') pids.push(Number(entry)) } catch {}
  }
  return pids
}

/** Ticks of each process in `pids`, as a Map (the gone ones left out). */
function ticksOf (pids) {
  const ticks = new Map()
  for (const pid of pids) {
    const value = processTicks(pid)
    if (value !== null) ticks.set(pid, value)
  }
  return ticks
}

/** The local ports of `pid`'s TCP connections to port 5432: its PostgreSQL pool. */
function databasePorts (pid) {
  const inodes = new Set()
  try {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      try {
        const target = readlinkSync(`/proc/${pid}/fd/${fd}`)
        if (target.startsWith('socket:[')) inodes.add(target.slice(8, -1))
      } catch {}
    }
  } catch { return [] }
  const ports = []
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text
    try { text = readFileSync(table, 'utf8') } catch { continue }
    for (const line of text.split('\n').slice(1)) {
      const columns = line.trim().split(/\s+/)
      if (columns.length < 10) continue
      const [, local, remote] = columns
      if (remote.endsWith(':1538') && inodes.has(columns[9])) ports.push(parseInt(local.split(':')[1], 16)) // 0x1538 = 5432
    }
  }
  return ports
}

/**
 * Samples CPU time around measurements. `db` is a pg client (of the orchestrator, not the server)
 * used to map the server's pool connections to backend pids.
 */
export class CpuSampler {
  constructor (db) { this.db = db }

  /** PostgreSQL backend pids serving `serverPid`'s connections. */
  async ownBackends (serverPid) {
    const ports = databasePorts(serverPid)
    if (ports.length === 0) return []
    const { rows } = await this.db.query('SELECT pid FROM pg_stat_activity WHERE client_port = ANY($1::int[])', [ports])
    return rows.map((row) => row.pid)
  }

  /** A snapshot before a measurement. */
  async start (serverPid) {
    const own = await this.ownBackends(serverPid)
    return {
      serverPid,
      server: processTicks(serverPid),
      postgres: ticksOf(postgresPids()),
      own: new Set(own),
      client: process.cpuUsage(),
      at: performance.now()
    }
  }

  /**
   * CPU used since `snapshot`, in microseconds: server, PostgreSQL (all and own), this process
   * (the load generator), plus how many postgres processes appeared and vanished meanwhile.
   */
  async stop (snapshot) {
    const client = process.cpuUsage(snapshot.client)
    const server = processTicks(snapshot.serverPid)
    // re-listed at the end: backends come and go (a pool grows under load)
    const after = ticksOf(postgresPids())
    const ownAfter = new Set([...snapshot.own, ...await this.ownBackends(snapshot.serverPid)])
    let all = 0
    let own = 0
    let appeared = 0
    for (const [pid, ticks] of after) {
      const before = snapshot.postgres.get(pid)
      if (before === undefined) appeared += 1
      const used = ticks - (before ?? 0)
      all += used
      if (ownAfter.has(pid)) own += used
    }
    const gone = [...snapshot.postgres.keys()].filter((pid) => !after.has(pid)).length
    const micros = (ticks) => ticks * 1e6 / CLOCK_TICKS
    return {
      seconds: (performance.now() - snapshot.at) / 1000,
      serverUs: server === null || snapshot.server === null ? null : micros(server - snapshot.server),
      pgAllUs: micros(all),
      pgOwnUs: micros(own),
      clientUs: client.user + client.system,
      pgAppeared: appeared,
      pgGone: gone
    }
  }
}
