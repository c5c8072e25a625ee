// What the figures were measured on: they move with the machine, so every result file says which.
import { execFileSync } from 'node:child_process'
import { cpus, loadavg, release, totalmem } from 'node:os'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))

function git (...args) {
  try { return execFileSync('git', args, { cwd: root, encoding: 'utf8' }).trim() } catch { return null }
}

/** CPU, cores, memory, kernel, Node, PostgreSQL (through `db`), git commit, load average now. */
export async function describeMachine (db) {
  const { rows: [pgRow] } = await db.query('SHOW server_version')
  const status = git('status', '--porcelain', '--untracked-files=no')
  return {
    cpuModel: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30 * 10) / 10,
    kernel: release(),
    node: process.version,
    postgres: pgRow.server_version,
    gitCommit: git('rev-parse', 'HEAD'),
    gitDirty: status === null ? null : status !== '',
    loadAverageAtStart: loadavg().map((value) => Math.round(value * 100) / 100)
  }
}
