// The run's knobs, from the environment. BENCH_QUICK=1 is a smoke test (1 round, 2 s, 20,000
// audit events, 50 clients): it proves the instrument works, its figures are not for comparing.
import { ALGORITHMS } from './jws.mjs'

const number = (name, fallback) => {
  const value = process.env[name]
  if (value === undefined || value === '') return fallback
  const parsed = Number(value)
  if (!Number.isFinite(parsed) || parsed <= 0) throw new Error(`${name} must be a positive number, not ${value}`)
  return parsed
}
const list = (name, fallback) => {
  const entries = (process.env[name] ?? '').split(',').map((entry) => entry.trim()).filter(Boolean)
  return entries.length > 0 ? entries : [...fallback]
}

export function readSettings () {
  const quick = process.env.BENCH_QUICK === '1'
  const seconds = number('BENCH_DURATION', quick ? 2 : 5)
  const algs = list('BENCH_ALGS', ALGORITHMS)
  for (const alg of algs) if (!ALGORITHMS.includes(alg)) throw new Error(`BENCH_ALGS: unknown algorithm ${alg} (${ALGORITHMS.join(', ')})`)
  // RS256 is always measured: every ratio is anchored on it
  if (!algs.includes('RS256')) algs.unshift('RS256')
  return {
    quick,
    rounds: number('BENCH_ROUNDS', quick ? 1 : 3),
    seconds,
    warmupSeconds: number('BENCH_WARMUP', quick ? 1 : 2),
    rawSeconds: number('BENCH_RAW_SECONDS', quick ? 1 : 2),
    connections: list('BENCH_CONNECTIONS', ['10', '50']).map(Number),
    algs: ALGORITHMS.filter((alg) => algs.includes(alg)),
    agents: number('BENCH_AGENTS', 10_000),
    clients: number('BENCH_CLIENTS', quick ? 50 : 200),
    events: number('BENCH_EVENTS', quick ? 20_000 : 1_000_000),
    auditSeconds: number('BENCH_AUDIT_DURATION', seconds),
    auditConnections: number('BENCH_AUDIT_CONNECTIONS', 10),
    // after a product measurement: the sealer (every AUDIT_SEAL_INTERVAL_MS, 1 s by default) seals
    // what the load wrote; its CPU belongs to that measurement, so the reading waits for it
    settleMs: number('BENCH_SETTLE_MS', 1500),
    // read by servers/agentidp.mjs; recorded here so a result file says it was not as deployed
    agentidpEnv: process.env.BENCH_AGENTIDP_ENV ?? '',
    keepLogs: process.env.BENCH_KEEP_LOGS === '1',
    keepSchema: process.env.BENCH_KEEP_SCHEMA === '1',
    resultsDir: process.env.BENCH_RESULTS_DIR ?? new URL('../results/', import.meta.url).pathname
  }
}
