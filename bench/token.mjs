// npm run bench: token issuance throughput and latency, as ratios measured in one run.
//   1. the raw RS256 signing rate of one core (node:crypto, synchronous, this process)
//   2. AgentIdP's POST /api/v1/token (real PostgreSQL + Redis, argon2id hash in place, limits off)
//   3. panva's oidc-provider issuing RS256 JWT access tokens for the same grant
// Each server runs in its own process; autocannon drives 10 connections from this one. The two
// vCPUs here are SMT siblings, so absolute numbers move with the machine: read the ratios.
import { spawn } from 'node:child_process'
import { generateKeyPairSync, sign } from 'node:crypto'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'

const DURATION_S = Number(process.env.BENCH_DURATION ?? 10)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 10)
const TARGETS = { rawSignRatio: 0.65, oidcProviderRatio: 1.3, p99Ms: 50 }

function rawSignRate (seconds = 3) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const input = Buffer.alloc(420, 'a') // about the size of an access token's header.payload
  let signatures = 0
  const started = performance.now()
  while (performance.now() - started < seconds * 1000) {
    sign('sha256', input, privateKey)
    signatures += 1
  }
  return signatures / ((performance.now() - started) / 1000)
}

async function startServer (script, port) {
  const child = spawn(process.execPath, [fileURLToPath(new URL(`./servers/${script}`, import.meta.url)), String(port)], {
    stdio: ['ignore', 'pipe', 'inherit']
  })
  const lines = createInterface({ input: child.stdout })
  const ready = await new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)))
    lines.on('line', (line) => {
      try { const message = JSON.parse(line); if (message.ready) resolve(message) } catch {}
    })
  })
  return { ...ready, port, stop: () => new Promise((resolve) => { child.once('exit', resolve); child.kill('SIGTERM') }) }
}

async function load (server, body) {
  const basic = Buffer.from(`${encodeURIComponent(server.client_id)}:${encodeURIComponent(server.client_secret)}`).toString('base64')
  const options = {
    url: `http://127.0.0.1:${server.port}${server.tokenPath}`,
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    body,
    connections: CONNECTIONS
  }
  await autocannon({ ...options, duration: 2 }) // warm-up: JIT, pools, the verified-secret digest
  const result = await autocannon({ ...options, duration: DURATION_S })
  const ok = result['2xx']
  return {
    tokensPerSecond: ok / DURATION_S,
    p50: result.latency.p50,
    p99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors
  }
}

const raw = rawSignRate()
const idp = await startServer('agentidp.mjs', 4711)
const ours = await load(idp, 'grant_type=client_credentials&scope=agents%3Aread')
await idp.stop()
const reference = await startServer('oidc-provider.mjs', 4712)
const theirs = await load(reference, 'grant_type=client_credentials&scope=api%3Aread')
await reference.stop()

const rows = [
  ['raw RS256 sign, one core', `${raw.toFixed(0)}/s`, '', ''],
  ['AgentIdP POST /api/v1/token', `${ours.tokensPerSecond.toFixed(0)}/s`, `${ours.p50} ms`, `${ours.p99} ms`],
  ['oidc-provider client_credentials (JWT)', `${theirs.tokensPerSecond.toFixed(0)}/s`, `${theirs.p50} ms`, `${theirs.p99} ms`]
]
console.log(`\n${CONNECTIONS} connections, ${DURATION_S} s each\n`)
console.log(['', 'tokens', 'p50', 'p99'].join('\t'))
for (const row of rows) console.log(row.join('\t'))
const vsRaw = ours.tokensPerSecond / raw
const vsReference = ours.tokensPerSecond / theirs.tokensPerSecond
console.log(`\nAgentIdP / raw sign rate:  ${vsRaw.toFixed(2)}  (target ≥ ${TARGETS.rawSignRatio})`)
console.log(`AgentIdP / oidc-provider:  ${vsReference.toFixed(2)}  (target ≥ ${TARGETS.oidcProviderRatio})`)
console.log(`AgentIdP p99:              ${ours.p99} ms  (target < ${TARGETS.p99Ms} ms)`)
if (ours.non2xx > 0 || ours.errors > 0) console.log(`AgentIdP non-2xx: ${ours.non2xx}, errors: ${ours.errors}`)
const met = vsRaw >= TARGETS.rawSignRatio && vsReference >= TARGETS.oidcProviderRatio && ours.p99 < TARGETS.p99Ms && ours.non2xx === 0
console.log(met ? '\nall targets met' : '\nTARGETS NOT MET')
process.exitCode = met ? 0 : 1
