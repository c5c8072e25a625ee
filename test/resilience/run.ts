/**
 * `npm run test:resilience`: the resilience suite of issue 11 as its own tap run, one file at a
 * time (the soak measures latency and memory, so nothing else of ours may run beside it), then ONE
 * summary of the figures each file appended to the figures file. Exit status: tap's, or 1 when a
 * file reported nothing or a counted failure (5xx, leaks, races lost) is not zero.
 *
 * Run by node itself (type stripping): it imports nothing of the project, so that it works before
 * any build and whatever tap's loader does.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
// type-only: erased when node strips the types, so nothing of the project is loaded at run time
import type { Figures } from './support.js'

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..', '..')
const figuresFile = process.env.RESILIENCE_FIGURES ?? join(root, '.tap', 'resilience', 'figures.jsonl')

// files named on the command line (npm run test:resilience -- test/resilience/fuzz.test.ts), else all
const named = process.argv.slice(2)
const files = named.length > 0
  ? named
  : readdirSync(here).filter((name) => name.endsWith('.test.ts')).sort().map((name) => relative(root, join(here, name)))

rmSync(figuresFile, { force: true })
const started = Date.now()
// a whole file may take minutes (the soak, RESILIENCE_SOAK_SECONDS): tap's per-file timeout follows it
const soakSeconds = Number(process.env.RESILIENCE_SOAK_SECONDS ?? 30)
const timeout = Math.max(600, soakSeconds + 300)
const tap = spawnSync(join(root, 'node_modules', '.bin', 'tap'), ['run', '--jobs=1', '--disable-coverage', `--timeout=${timeout}`, ...files], {
  cwd: root, stdio: 'inherit', env: { ...process.env, RESILIENCE_FIGURES: figuresFile }
})
const elapsed = (Date.now() - started) / 1000

const figures: Figures[] = existsSync(figuresFile)
  ? readFileSync(figuresFile, 'utf8').split('\n').filter(Boolean).map((line) => JSON.parse(line) as Figures)
  : []

const sum = (name: 'inputsTried' | 'faultsSurvived' | 'serverErrors' | 'leaks' | 'racesLost') =>
  figures.reduce((total, entry) => total + (typeof entry[name] === 'number' ? entry[name] : 0), 0)
const parts = files.map((file) => file.replace(/^.*\//, '').replace(/\.test\.ts$/, ''))
const silent = parts.filter((part) => !figures.some((entry) => entry.part === part))

const lines = [
  '',
  '== resilience summary (issue 11)',
  `files:           ${parts.join(', ')} in ${elapsed.toFixed(0)} s (tap exit ${tap.status ?? tap.signal})`,
  `faults survived: ${sum('faultsSurvived')}`,
  `inputs tried:    ${sum('inputsTried')}`,
  `5xx:             ${sum('serverErrors')} (documented 503s excepted)`,
  `leaks:           ${sum('leaks')}`,
  `races lost:      ${sum('racesLost')}`
]
for (const entry of figures) {
  for (const [name, verdict] of Object.entries(entry.verdicts ?? {})) lines.push(`${`${entry.part}: ${name}`.padEnd(34)} ${verdict}`)
}
if (silent.length > 0) lines.push(`NO FIGURES from: ${silent.join(', ')} (the file failed before it could report)`)
console.log(lines.join('\n'))

const counted = sum('serverErrors') + sum('leaks') + sum('racesLost')
process.exit(tap.status !== 0 ? (tap.status ?? 1) : silent.length > 0 || counted > 0 ? 1 : 0)
