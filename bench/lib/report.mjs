// From the rounds' raw figures to what a reader needs: medians per measurement, ratios (each
// computed within a round, from figures taken seconds apart, then the median over rounds: the
// shared VM's speed drifts by ±15 % within a minute), the floors and their verdicts, the printed
// table and the JSON file.
import { median } from './load.mjs'

const ALGS = ['RS256', 'ES256', 'EdDSA']
const basic = (alg) => `agentidp/${alg}/token:client_secret_basic`

/**
 * Every ratio the run reports: `of` ÷ `to` (measurement ids; `raw/<alg>` is the raw sign rate).
 * `tag` is how it reads in the table's ratio column, on the row of `of`.
 */
export const RATIOS = [
  ...ALGS.flatMap((alg) => [
    { id: `${alg}:issuance/oidc-provider`, label: `${alg} issuance ÷ oidc-provider ${alg}`, of: basic(alg), to: `oidc-provider/${alg}/token`, tag: 'oidc' },
    { id: `${alg}:issuance/floor`, label: `${alg} issuance ÷ floor ${alg}`, of: basic(alg), to: `floor/${alg}/token`, tag: 'floor' },
    { id: `${alg}:issuance/raw-sign`, label: `${alg} issuance ÷ raw ${alg} sign rate`, of: basic(alg), to: `raw/${alg}`, tag: 'raw' }
  ]),
  { id: 'introspection/bare', label: 'introspection ÷ bare Fastify', of: 'agentidp/RS256/introspect', to: 'bare/json', tag: 'bare' },
  { id: 'get-agent/bare', label: 'GET agent ÷ bare Fastify', of: 'agentidp/RS256/get-agent', to: 'bare/json', tag: 'bare' },
  { id: 'introspection/oidc-provider', label: 'introspection ÷ oidc-provider introspection', of: 'agentidp/RS256/introspect', to: 'oidc-provider/introspect', tag: 'oidc' },
  { id: 'ES256:issuance/RS256', label: 'ES256 issuance ÷ RS256 issuance', of: basic('ES256'), to: basic('RS256'), tag: 'RS256' },
  { id: 'EdDSA:issuance/RS256', label: 'EdDSA issuance ÷ RS256 issuance', of: basic('EdDSA'), to: basic('RS256'), tag: 'RS256' },
  // reported, no floor: what each other way of asking costs next to client_secret_basic
  { id: 'private_key_jwt/basic', label: 'private_key_jwt ÷ client_secret_basic', of: 'agentidp/RS256/token:private_key_jwt', to: basic('RS256'), tag: 'basic' },
  { id: 'dpop/basic', label: 'DPoP ÷ client_secret_basic', of: 'agentidp/RS256/token:dpop', to: basic('RS256'), tag: 'basic' },
  { id: 'token-exchange/basic', label: 'token exchange ÷ client_secret_basic', of: 'agentidp/RS256/token-exchange', to: basic('RS256'), tag: 'basic' },
  { id: 'ES256:introspection/RS256', label: 'ES256 introspection ÷ RS256 introspection', of: 'agentidp/ES256/introspect', to: 'agentidp/RS256/introspect', tag: 'RS256' },
  { id: 'EdDSA:introspection/RS256', label: 'EdDSA introspection ÷ RS256 introspection', of: 'agentidp/EdDSA/introspect', to: 'agentidp/RS256/introspect', tag: 'RS256' }
]

/** The floors of issue 18: ratio floors hold at every measured connection count. */
export const FLOORS = {
  ratios: [
    { ratio: 'RS256:issuance/oidc-provider', min: 1.0 },
    { ratio: 'RS256:issuance/floor', min: 0.6 },
    { ratio: 'introspection/bare', min: 0.25 },
    { ratio: 'get-agent/bare', min: 0.25 },
    { ratio: 'ES256:issuance/RS256', min: 3, alg: 'ES256' },
    { ratio: 'EdDSA:issuance/RS256', min: 3, alg: 'EdDSA' }
  ],
  p99Ms: 50, // every product measurement at 10 connections
  p99Connections: 10,
  auditP95Ms: 50 // every list shape of GET /api/v1/audit
}

const FIELDS = ['rps', 'p50', 'p95', 'p99', 'serverUsPerRequest', 'pgAllUsPerRequest', 'pgOwnUsPerRequest', 'clientUsPerRequest', 'logBytesPerRequest']

/** Medians over rounds of each figure, errors summed. */
export function summarise (measurement) {
  const summary = {}
  for (const field of FIELDS) summary[field] = median(measurement.rounds.map((round) => round[field]))
  summary.errors = measurement.rounds.reduce((sum, round) => sum + round.errors, 0)
  summary.requests = measurement.rounds.reduce((sum, round) => sum + round.requests, 0)
  return summary
}

/**
 * Each ratio at each connection count: per round, then the median. `rps(id, connections, round)`
 * answers a measurement's (or raw sign rate's) figure in a round, or null.
 */
export function computeRatios (rps, { rounds, connections }) {
  const ratios = []
  for (const spec of RATIOS) {
    for (const count of connections) {
      const values = []
      for (let round = 0; round < rounds; round += 1) {
        const of = rps(spec.of, count, round)
        const to = rps(spec.to, count, round)
        values.push(of === null || to === null || to === 0 ? null : of / to)
      }
      if (values.every((value) => value === null)) continue
      ratios.push({ id: spec.id, label: spec.label, of: spec.of, to: spec.to, tag: spec.tag, connections: count, rounds: values, median: median(values) })
    }
  }
  return ratios
}

/** Verdicts: met, missed, or unavailable (a figure the run could not produce; counts as missed). */
export function judge ({ measurements, ratios, audit, algs, connections, unavailable, broken }) {
  const floors = []
  for (const floor of FLOORS.ratios) {
    if (floor.alg !== undefined && !algs.includes(floor.alg)) continue
    const spec = RATIOS.find((ratio) => ratio.id === floor.ratio)
    for (const count of connections) {
      const ratio = ratios.find((entry) => entry.id === floor.ratio && entry.connections === count)
      const value = ratio?.median ?? null
      const reason = floor.alg !== undefined && unavailable[floor.alg] !== undefined ? unavailable[floor.alg] : 'not measured'
      floors.push({
        id: `${floor.ratio}@${count}`, description: `${spec.label} ≥ ${floor.min} (${count} connections)`, value, threshold: floor.min,
        verdict: value === null ? 'unavailable' : value >= floor.min ? 'met' : 'missed', ...(value === null ? { reason } : {})
      })
    }
  }
  for (const measurement of measurements) {
    if (measurement.kind !== 'product') continue
    if (measurement.connections === FLOORS.p99Connections) {
      const value = measurement.summary.p99
      floors.push({
        id: `p99:${measurement.id}`, description: `${measurement.label} p99 < ${FLOORS.p99Ms} ms (${measurement.connections} connections)`, value, threshold: FLOORS.p99Ms,
        verdict: value === null ? 'unavailable' : value < FLOORS.p99Ms ? 'met' : 'missed'
      })
    }
    // a measurement that errs measures something else than it says: it fails whatever its speed
    floors.push({
      id: `errors:${measurement.id}@${measurement.connections}`, description: `${measurement.label}: no errors (${measurement.connections} connections)`,
      value: measurement.summary.errors, threshold: 0, verdict: measurement.summary.errors === 0 ? 'met' : 'missed'
    })
  }
  for (const shape of audit?.shapes ?? []) {
    if (!shape.list) continue
    floors.push({
      id: `audit-p95:${shape.label}`, description: `audit "${shape.label}" p95 < ${FLOORS.auditP95Ms} ms (${shape.connections} connections)`, value: shape.p95, threshold: FLOORS.auditP95Ms,
      verdict: shape.p95 === null ? 'unavailable' : shape.p95 < FLOORS.auditP95Ms && shape.errors === 0 ? 'met' : 'missed'
    })
  }
  for (const target of broken) {
    floors.push({ id: `probe:${target.id}`, description: `${target.label} answers correctly`, value: null, threshold: null, verdict: 'missed', reason: target.reason })
  }
  return floors
}

// ---- printing --------------------------------------------------------------------------------

const num = (value, digits = 0) => value === null || value === undefined ? '–' : value.toLocaleString('en', { minimumFractionDigits: digits, maximumFractionDigits: digits })
const ms = (value) => value === null || value === undefined ? '–' : value < 10 ? value.toFixed(2) : value.toFixed(1)
const ratioText = (value) => value === null || value === undefined ? '–' : value.toFixed(2)

/** A plain-text table: the first column left-aligned, the others right-aligned (also bench/compare.mjs). */
export function printTable (rows, header) {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => String(row[column]).length)))
  const line = (cells) => cells.map((cell, column) => column === 0 ? String(cell).padEnd(widths[column]) : String(cell).padStart(widths[column])).join('  ').trimEnd()
  console.log(line(header))
  console.log(widths.map((width) => '─'.repeat(width)).join('  '))
  for (const row of rows) console.log(line(row))
}

/** The end-of-run report on stdout. */
export function printReport (result) {
  const { settings } = result
  console.log(`\nAgentIdP bench — ${result.startedAt}, ${settings.rounds} round(s) × ${settings.seconds} s per measurement, ` +
    `${settings.agents.toLocaleString('en')} agents (${settings.clients} in use), ${result.machine.cpuModel} × ${result.machine.cores}, load ${result.machine.loadAverageAtStart.join(' ')}`)
  if (settings.agentidpEnv !== '') console.log(`NOT AS DEPLOYED: AgentIdP ran with BENCH_AGENTIDP_ENV=${settings.agentidpEnv}`)
  for (const [alg, reason] of Object.entries(result.unavailable)) console.log(`AgentIdP ${alg}: unavailable — ${reason}`)
  for (const target of result.broken) console.log(`${target.label}: not measured — ${target.reason}`)
  console.log('\nmedians over rounds; ms are latencies of 2xx answers; µs/req are CPU time per request served (server process, all postgres processes, the backends of the measured server, this load generator)\n')
  const header = ['measurement', 'conns', 'req/s', 'p50 ms', 'p95 ms', 'p99 ms', 'errors', 'server µs', 'PG µs', 'PG own µs', 'gen µs', 'ratios (median)']
  const rows = []
  for (const count of settings.connections) {
    for (const measurement of result.measurements.filter((entry) => entry.connections === count)) {
      const s = measurement.summary
      const ratios = result.ratios.filter((ratio) => ratio.of === measurement.id && ratio.connections === count)
        .map((ratio) => `${ratioText(ratio.median)}×${ratio.tag}`).join(' ')
      rows.push([measurement.label, count, num(s.rps), ms(s.p50), ms(s.p95), ms(s.p99), num(s.errors), num(s.serverUsPerRequest), num(s.pgAllUsPerRequest), num(s.pgOwnUsPerRequest), num(s.clientUsPerRequest), ratios])
    }
  }
  for (const [alg, values] of Object.entries(result.rawSign)) rows.push([`raw ${alg} sign, one core`, '–', num(median(values)), '', '', '', '', '', '', '', '', ''])
  printTable(rows, header)

  if (result.audit !== null) {
    console.log(`\nGET /api/v1/audit over HTTP, ${result.audit.events.toLocaleString('en')} events (${result.audit.seeded.toLocaleString('en')} seeded), ${result.audit.connections} connections, ${result.audit.seconds} s per shape\n`)
    printTable(result.audit.shapes.map((shape) => [shape.label, shape.connections, num(shape.rps), ms(shape.p50), ms(shape.p95), ms(shape.p99), num(shape.errors), num(shape.serverUsPerRequest), num(shape.pgAllUsPerRequest)]),
      ['shape', 'conns', 'req/s', 'p50 ms', 'p95 ms', 'p99 ms', 'errors', 'server µs', 'PG µs'])
  }

  console.log('\nratios (per round, then the median)\n')
  printTable(result.ratios.map((ratio) => [ratio.label, ratio.connections, ratioText(ratio.median), ratio.rounds.map(ratioText).join(' ')]), ['ratio', 'conns', 'median', 'rounds'])

  const missed = result.floors.filter((floor) => floor.verdict !== 'met')
  console.log(`\nfloors: ${result.floors.length - missed.length} of ${result.floors.length} met`)
  for (const floor of missed) {
    const value = typeof floor.value === 'number' ? (Number.isInteger(floor.value) ? String(floor.value) : floor.value.toFixed(2)) : '–'
    console.log(`  ${floor.verdict.toUpperCase().padEnd(11)} ${floor.description}: ${value}${floor.reason === undefined ? '' : ` (${floor.reason})`}`)
  }
  console.log(missed.length === 0 ? 'ALL FLOORS MET' : 'FLOORS NOT MET')
}
