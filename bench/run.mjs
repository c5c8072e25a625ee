// npm run bench: the whole instrument in one run (bench/README.md says what each figure is).
//   npm run bench                      measure, print, write bench/results/<timestamp>.json, exit 0
//   npm run bench -- --check           … and exit 1 when a floor is missed
//   npm run bench -- --compare A B     print two result files side by side (bench/compare.mjs)
// Steps: a fresh schema; 10,000 agents and 10⁶ audit events seeded in bulk; the servers started
// (AgentIdP once per algorithm, oidc-provider and the floor per algorithm, bare Fastify), each a
// process of its own; tokens and keys prepared; every target probed once and warmed up; then
// ROUNDS rounds in which every target is measured in turn at each connection count, with CPU
// read from /proc around each; then the audit query shapes; then the report.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { compareFiles } from './compare.mjs'
import { auditShapes } from './lib/audit-shapes.mjs'
import { CpuSampler } from './lib/cpu.mjs'
import { runLoad } from './lib/load.mjs'
import { describeMachine } from './lib/machine.mjs'
import { computeRatios, judge, printReport, summarise } from './lib/report.mjs'
import { seedAgents, seedAuditEvents } from './lib/seed.mjs'
import { freePort, startServer } from './lib/servers.mjs'
import { readSettings } from './lib/settings.mjs'
import {
  agentIdpTargets, bareTarget, floorTarget, oidcProviderTargets, prepareAgentIdp, prepareOidcProvider, probe, registerClientKeys
} from './lib/targets.mjs'
import { BASE_DATABASE_URL, benchSchema } from './support.mjs'

const log = (message) => process.stderr.write(`${message}\n`)
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const args = process.argv.slice(2)
if (args[0] === '--compare') {
  if (args.length !== 3) throw new Error('usage: npm run bench -- --compare A.json B.json')
  compareFiles(args[1], args[2])
  process.exit(0)
}
const CHECK = args.includes('--check')
for (const arg of args) if (arg !== '--check') throw new Error(`unknown argument ${arg} (--check, --compare A B)`)

/** Synchronous node:crypto signatures per second, one core, a fresh process (bench/raw-sign.mjs). */
function rawSignRate (alg, seconds) {
  const run = spawnSync(process.execPath, [fileURLToPath(new URL('./raw-sign.mjs', import.meta.url)), String(seconds), alg], { encoding: 'utf8' })
  if (run.status !== 0) throw new Error(`raw-sign.mjs ${alg} failed: ${run.stderr}`)
  return Number(run.stdout)
}

/** One measurement of `target` at `connections`, with the CPU it cost. */
async function measure (target, connections, seconds, { sampler, settleMs }) {
  const logBefore = target.server.logBytes()
  const snapshot = await sampler.start(target.server.pid)
  const load = await runLoad({ origin: target.server.origin, request: target.request, connections, seconds })
  if (target.settle) await pause(settleMs)
  const cpu = await sampler.stop(snapshot)
  const logAfter = target.server.logBytes()
  const served = load.requests + load.non2xx
  const per = (value) => value === null || served === 0 ? null : value / served
  return {
    ...load,
    serverUsPerRequest: per(cpu.serverUs),
    pgAllUsPerRequest: per(cpu.pgAllUs),
    pgOwnUsPerRequest: per(cpu.pgOwnUs),
    clientUsPerRequest: per(cpu.clientUs),
    logBytesPerRequest: logBefore === null || logAfter === null ? null : per(logAfter - logBefore),
    cpu
  }
}

const settings = readSettings()
const startedAt = new Date()
const stamp = startedAt.toISOString().replace(/\.\d+Z$/, 'Z').replace(/:/g, '-')
const logDir = mkdtempSync(join(tmpdir(), 'agentidp-bench-'))
const servers = []
let schema = null
let pool = null

async function cleanup () {
  await Promise.allSettled(servers.map((server) => server.stop()))
  if (pool !== null) {
    if (schema !== null && !settings.keepSchema) await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`).catch((error) => log(`could not drop ${schema}: ${error.message}`))
    await pool.end()
  }
  if (!settings.keepLogs) rmSync(logDir, { recursive: true, force: true })
}
let interrupted = false
process.once('SIGINT', () => { interrupted = true; log('interrupted: stopping servers, dropping the schema'); cleanup().finally(() => process.exit(130)) })

try {
  // ---- schema and seed ---------------------------------------------------------------------------
  const created = await benchSchema()
  schema = created.schema
  pool = new pg.Pool({ connectionString: created.url, max: 4 })
  const machine = await describeMachine(pool)
  log(`schema ${schema}; ${settings.quick ? 'QUICK (smoke test) ' : ''}${settings.rounds} round(s) × ${settings.seconds} s, connections ${settings.connections.join(', ')}, algorithms ${settings.algs.join(', ')}`)
  const agents = await seedAgents(pool, { agents: settings.agents, clients: settings.clients })
  log(`seeded ${settings.agents.toLocaleString('en')} agents: ${settings.clients + 1} argon2id hashes in ${agents.hashSeconds.toFixed(1)} s, rows in ${agents.insertSeconds.toFixed(1)} s`)
  const events = await seedAuditEvents(pool, schema, settings.events)
  log(`seeded ${settings.events.toLocaleString('en')} audit events in ${events.seedSeconds.toFixed(1)} s, sealed in ${events.sealSeconds.toFixed(1)} s`)

  // ---- servers -------------------------------------------------------------------------------------
  const start = async (script, args, logName) => {
    const server = await startServer(script, { port: await freePort(), args, logFile: join(logDir, `${logName}.log`) })
    server.name = logName
    servers.push(server)
    return server
  }
  const agentidp = {}
  const oidc = {}
  const floors = {}
  const unavailable = {}
  for (const alg of settings.algs) {
    try {
      agentidp[alg] = await start('agentidp.mjs', [alg, schema], `agentidp-${alg}`)
    } catch (error) {
      // RS256 is the anchor of every ratio: without it there is no run. Another algorithm that a
      // build cannot start with is reported unavailable.
      if (alg === 'RS256') throw error
      unavailable[alg] = `the server did not start: ${error.summary}`
    }
    oidc[alg] = await start('oidc-provider.mjs', [alg], `oidc-provider-${alg}`)
    floors[alg] = await start('floor.mjs', [alg], `floor-${alg}`)
  }
  const bare = await start('bare.mjs', [], 'bare')
  log(`started ${servers.length} servers (logs in ${logDir})`)

  // ---- preparation: tokens, keys, probes ------------------------------------------------------------
  const prepared = {}
  for (const alg of settings.algs) {
    if (unavailable[alg] !== undefined) continue
    if (agentidp[alg].unavailable !== null) { unavailable[alg] = agentidp[alg].unavailable; continue }
    const state = await prepareAgentIdp(agentidp[alg], alg, agents)
    if (state.unavailable !== undefined) { unavailable[alg] = state.unavailable; continue }
    prepared[alg] = state
  }
  for (const alg of Object.keys(unavailable)) {
    log(`AgentIdP ${alg}: unavailable — ${unavailable[alg]}`)
    await agentidp[alg]?.stop()
  }
  if (prepared.RS256 === undefined) throw new Error(`the RS256 server is unavailable: ${unavailable.RS256}`)
  const keys = await registerClientKeys(agentidp.RS256, prepared.RS256.operatorToken, agents.clients)
  const opaqueTokens = await prepareOidcProvider(oidc.RS256, 50)
  log(`prepared ${agents.clients.length} tokens per server and ${keys.length} client keys`)

  // interleaved so that what a ratio compares is measured seconds apart
  const product = Object.fromEntries(Object.entries(prepared).map(([alg, state]) => [alg, agentIdpTargets(agentidp[alg], alg, { ...agents, ...state, keys })]))
  const reference = Object.fromEntries(settings.algs.map((alg) => [alg, oidcProviderTargets(oidc[alg], alg, alg === 'RS256' ? { opaqueTokens } : {})]))
  const others = settings.algs.filter((alg) => alg !== 'RS256' && product[alg] !== undefined)
  const ordered = [
    ...settings.algs.flatMap((alg) => [product[alg]?.basic, reference[alg].token, floorTarget(floors[alg], alg)]),
    product.RS256.introspect, bareTarget(bare), reference.RS256.introspect, product.RS256.getAgent,
    ...others.map((alg) => product[alg].introspect),
    product.RS256.privateKeyJwt, product.RS256.dpop, product.RS256.exchange, product.RS256.live
  ].filter((target) => target !== undefined)
  const byId = new Map(ordered.map((target) => [target.id, target]))

  const broken = []
  for (const [id, target] of byId) {
    try {
      await probe(target)
    } catch (error) {
      broken.push({ id, label: target.label, reason: error.message })
      byId.delete(id)
      log(`${target.label}: not measured — ${error.message}`)
    }
  }
  const targets = [...byId.values()]

  // ---- warm-up: JIT, pools, caches (each client's verified-secret digest is already in place) ------
  for (const target of targets) await runLoad({ origin: target.server.origin, request: target.request, connections: settings.connections[0], seconds: settings.warmupSeconds })
  log(`warmed up ${targets.length} targets`)

  // ---- rounds ----------------------------------------------------------------------------------------
  const sampler = new CpuSampler(pool)
  const measurements = new Map()
  const rawSign = Object.fromEntries(settings.algs.map((alg) => [alg, []]))
  for (let round = 0; round < settings.rounds && !interrupted; round += 1) {
    for (const alg of settings.algs) rawSign[alg].push(rawSignRate(alg, settings.rawSeconds))
    for (const connections of settings.connections) {
      for (const target of targets) {
        const key = `${target.id}@${connections}`
        if (!measurements.has(key)) measurements.set(key, { id: target.id, label: target.label, group: target.group, kind: target.kind, alg: target.alg, connections, rounds: [] })
        const figures = await measure(target, connections, settings.seconds, { sampler, settleMs: settings.settleMs })
        measurements.get(key).rounds.push({ round: round + 1, ...figures })
        log(`round ${round + 1}/${settings.rounds}  ${String(connections).padStart(2)} conns  ${target.label.padEnd(44)} ${figures.rps.toFixed(0).padStart(6)} req/s  p99 ${figures.p99?.toFixed(1) ?? '–'} ms` +
          `${figures.errors > 0 ? `  ${figures.errors} errors ${JSON.stringify(figures.statuses)}${figures.firstError === null ? '' : ` ${figures.firstError}`}` : ''}`)
      }
    }
  }

  // ---- audit query shapes, over HTTP, same server --------------------------------------------------
  const { rows: [{ count }] } = await pool.query('SELECT count(*)::int AS count FROM audit_events')
  const shapes = await auditShapes(pool)
  const auditHeaders = { authorization: `Bearer ${prepared.RS256.operatorToken}` }
  const audit = { events: count, seeded: settings.events, connections: settings.auditConnections, seconds: settings.auditSeconds, shapes: [] }
  const auditServer = agentidp.RS256
  for (const shape of shapes) {
    const target = { server: auditServer, settle: false, request: { method: 'GET', path: shape.path, headers: auditHeaders } }
    await runLoad({ origin: auditServer.origin, request: target.request, connections: 1, amount: 20 }) // warm-up
    // /audit/verify recomputes a day of the chain (≈ 100 ms): a few, one at a time
    const connections = shape.list ? settings.auditConnections : 1
    const snapshot = await sampler.start(auditServer.pid)
    const load = await runLoad({ origin: auditServer.origin, request: target.request, connections, ...(shape.list ? { seconds: settings.auditSeconds } : { amount: 10 }) })
    const cpu = await sampler.stop(snapshot)
    const served = load.requests + load.non2xx
    audit.shapes.push({
      label: shape.label, list: shape.list, connections, ...load,
      serverUsPerRequest: served === 0 || cpu.serverUs === null ? null : cpu.serverUs / served,
      pgAllUsPerRequest: served === 0 ? null : cpu.pgAllUs / served,
      pgOwnUsPerRequest: served === 0 ? null : cpu.pgOwnUs / served
    })
    log(`audit  ${shape.label.padEnd(44)} p95 ${load.p95?.toFixed(1) ?? '–'} ms${load.errors > 0 ? `  ${load.errors} errors ${JSON.stringify(load.statuses)}` : ''}`)
  }

  // ---- report ----------------------------------------------------------------------------------------
  const serverLogs = Object.fromEntries(servers.map((server) => [server.name, { logBytes: server.logBytes(), unavailable: server.unavailable ?? undefined }]))
  const measured = [...measurements.values()].map((measurement) => ({ ...measurement, summary: summarise(measurement) }))
  const rps = (id, connections, round) => {
    if (id.startsWith('raw/')) return rawSign[id.slice(4)]?.[round] ?? null
    const figures = measurements.get(`${id}@${connections}`)?.rounds[round]
    return figures === undefined ? null : figures.rps
  }
  const ratios = computeRatios(rps, { rounds: settings.rounds, connections: settings.connections })
  const floorsJudged = judge({ measurements: measured, ratios, audit, algs: settings.algs, connections: settings.connections, unavailable, broken })
  const finishedAt = new Date()
  const result = {
    format: 'agentidp-bench/1',
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    durationSeconds: Math.round((finishedAt - startedAt) / 1000),
    machine: { ...machine, loadAverageAtEnd: loadavg().map((value) => Math.round(value * 100) / 100) },
    settings: { ...settings, database: BASE_DATABASE_URL.replace(/\/\/[^@]*@/, '//') },
    seeding: { agents: settings.agents, clients: settings.clients, agentHashSeconds: agents.hashSeconds, agentInsertSeconds: agents.insertSeconds, events: settings.events, eventSeedSeconds: events.seedSeconds, eventSealSeconds: events.sealSeconds },
    unavailable,
    broken,
    servers: serverLogs,
    rawSign,
    measurements: measured.map(({ rounds, ...rest }) => ({ ...rest, rounds: rounds.map(({ cpu, ...figures }) => ({ ...figures, cpu })) })),
    ratios,
    audit,
    floors: floorsJudged,
    verdict: floorsJudged.every((floor) => floor.verdict === 'met') ? 'met' : 'missed'
  }
  printReport(result)
  mkdirSync(settings.resultsDir, { recursive: true })
  const file = join(settings.resultsDir, `${stamp}.json`)
  writeFileSync(file, JSON.stringify(result, null, 2) + '\n')
  console.log(`\nwritten: ${file} (${result.durationSeconds} s)`)
  process.exitCode = CHECK && result.verdict !== 'met' ? 1 : 0
} catch (error) {
  log(error.stack ?? String(error))
  process.exitCode = 2
} finally {
  await cleanup()
}
