// Two runs side by side: `npm run bench -- --compare A.json B.json` or `node bench/compare.mjs A B`.
// Every measurement (req/s, p50, p99, server and PostgreSQL CPU per request), every ratio, every
// audit shape and every floor whose verdict changed, with B's change from A. Runs on different
// machines or under different load compare badly: the header says what each was measured on.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { printTable } from './lib/report.mjs'

const read = (file) => {
  const result = JSON.parse(readFileSync(file, 'utf8'))
  if (result.format !== 'agentidp-bench/1') throw new Error(`${file} is not a result of npm run bench (format ${result.format})`)
  return result
}

const fixed = (value, digits) => value === null || value === undefined ? '–' : value.toFixed(digits)
/** B's change from A, in percent (a ratio's change too: both are "bigger is better" or plain figures). */
const change = (a, b) => a === null || a === undefined || b === null || b === undefined || a === 0 ? '' : `${b >= a ? '+' : ''}${((b / a - 1) * 100).toFixed(1)} %`

// header first here, as the tables below are written
const table = (header, rows) => printTable(rows, header)

/** Rows of `a` and `b` matched by `key`, in a's order then b's newcomers. */
function pair (a, b, key) {
  const keys = [...new Set([...a.map(key), ...b.map(key)])]
  return keys.map((k) => [k, a.find((entry) => key(entry) === k), b.find((entry) => key(entry) === k)])
}

export function compareFiles (fileA, fileB) {
  const a = read(fileA)
  const b = read(fileB)
  const describe = (name, file, r) => console.log(`${name}: ${file}\n   ${r.startedAt}, commit ${r.machine.gitCommit?.slice(0, 10) ?? '?'}${r.machine.gitDirty ? ' (dirty)' : ''}, ` +
    `${r.settings.rounds} × ${r.settings.seconds} s${r.settings.quick ? ' QUICK' : ''}, ${r.machine.cpuModel} × ${r.machine.cores}, load ${r.machine.loadAverageAtStart.join(' ')} → ${r.machine.loadAverageAtEnd.join(' ')}, verdict ${r.verdict}`)
  describe('A', fileA, a)
  describe('B', fileB, b)

  console.log('\nmeasurements (medians over rounds)\n')
  table(['measurement', 'conns', 'req/s A', 'req/s B', 'Δ', 'p50 A', 'p50 B', 'p99 A', 'p99 B', 'Δ p99', 'server µs A', 'B', 'Δ', 'PG µs A', 'B', 'Δ'],
    pair(a.measurements, b.measurements, (m) => `${m.id}@${m.connections}`).map(([, x, y]) => {
      const s = x?.summary ?? {}
      const t = y?.summary ?? {}
      return [(x ?? y).label, (x ?? y).connections, fixed(s.rps, 0), fixed(t.rps, 0), change(s.rps, t.rps), fixed(s.p50, 2), fixed(t.p50, 2), fixed(s.p99, 2), fixed(t.p99, 2), change(s.p99, t.p99),
        fixed(s.serverUsPerRequest, 0), fixed(t.serverUsPerRequest, 0), change(s.serverUsPerRequest, t.serverUsPerRequest),
        fixed(s.pgAllUsPerRequest, 0), fixed(t.pgAllUsPerRequest, 0), change(s.pgAllUsPerRequest, t.pgAllUsPerRequest)]
    }))
  const raws = [...new Set([...Object.keys(a.rawSign ?? {}), ...Object.keys(b.rawSign ?? {})])]
  const med = (values) => { const v = [...(values ?? [])].sort((p, q) => p - q); return v.length === 0 ? null : v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2 }
  if (raws.length > 0) {
    console.log('')
    table(['raw sign rate', 'A', 'B', 'Δ'], raws.map((alg) => [alg, fixed(med(a.rawSign?.[alg]), 0), fixed(med(b.rawSign?.[alg]), 0), change(med(a.rawSign?.[alg]), med(b.rawSign?.[alg]))]))
  }

  console.log('\nratios (medians of per-round ratios)\n')
  table(['ratio', 'conns', 'A', 'B', 'Δ'], pair(a.ratios, b.ratios, (r) => `${r.id}@${r.connections}`)
    .map(([, x, y]) => [(x ?? y).label, (x ?? y).connections, fixed(x?.median, 2), fixed(y?.median, 2), change(x?.median, y?.median)]))

  if (a.audit !== null || b.audit !== null) {
    console.log(`\naudit shapes (A: ${a.audit?.events?.toLocaleString('en') ?? '–'} events, B: ${b.audit?.events?.toLocaleString('en') ?? '–'})\n`)
    table(['shape', 'p50 A', 'p50 B', 'p95 A', 'p95 B', 'Δ p95', 'p99 A', 'p99 B'], pair(a.audit?.shapes ?? [], b.audit?.shapes ?? [], (s) => s.label)
      .map(([label, x, y]) => [label, fixed(x?.p50, 2), fixed(y?.p50, 2), fixed(x?.p95, 2), fixed(y?.p95, 2), change(x?.p95, y?.p95), fixed(x?.p99, 2), fixed(y?.p99, 2)]))
  }

  const changed = pair(a.floors, b.floors, (f) => f.id).filter(([, x, y]) => x?.verdict !== y?.verdict)
  console.log(`\nfloors: A ${a.floors.filter((f) => f.verdict === 'met').length}/${a.floors.length} met, B ${b.floors.filter((f) => f.verdict === 'met').length}/${b.floors.length} met` +
    (changed.length === 0 ? ', no verdict changed' : ''))
  for (const [, x, y] of changed) console.log(`  ${(x ?? y).description}: ${x?.verdict ?? '–'} → ${y?.verdict ?? '–'}`)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [fileA, fileB] = process.argv.slice(2)
  if (fileA === undefined || fileB === undefined) {
    console.error('usage: node bench/compare.mjs A.json B.json')
    process.exit(2)
  }
  compareFiles(fileA, fileB)
}
