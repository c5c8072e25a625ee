// AgentIdP from dist/ as deployed, against the schema the runner seeded (bench/lib/seed.mjs), the
// real Redis, the default log level (info: its stdout is a file the runner chose), metrics on,
// every limiter on. argv: <port> <alg> <schema>.
//
// Limits: the load drives thousands of tokens a second through a few hundred seeded clients
// (BENCH_CLIENTS, round robin), i.e. dozens per client per second, and a full run issues thousands
// per client. Two limiters would trip and are raised, not turned off (their checks — a Redis
// counter, the monthly count row — stay in every request): RATE_LIMIT_TOKEN_PER_CLIENT (default
// 100 per minute per client) and TOKEN_MONTHLY_QUOTA (default 10,000 per agent and month; the
// schema is fresh per run, three servers share it). Every other one keeps its default: failed
// client and Bearer authentications per IP (the load makes none), agents per owner (the seeding
// respects it), the event-loop delay beyond which requests are shed.
//
// The signing algorithm is passed as JWT_ALG with a key of its kind. A build that does not know
// JWT_ALG refuses a non-RSA key (or ignores the variable): it says `unavailable` here, or the
// runner sees RS256 in the header of an issued token.
import { buildApp } from '../../dist/app.js'
import { announce, onStop } from '../lib/announce.mjs'
import { benchConfig, schemaUrl } from '../support.mjs'

const [portText, alg, schema] = process.argv.slice(2)
const port = Number(portText)
const issuer = `http://127.0.0.1:${port}`
const RAISED = '1000000000'
// BENCH_AGENTIDP_ENV="K=V K=V": overrides for profiling (e.g. LOG_LEVEL=warn TOKEN_MONTHLY_QUOTA=0 to
// see what logs or the quota cost); a run with it is not "as deployed", and its JSON says so
const extra = Object.fromEntries((process.env.BENCH_AGENTIDP_ENV ?? '').split(/\s+/).filter(Boolean).map((pair) => {
  const at = pair.indexOf('=')
  if (at <= 0) throw new Error(`BENCH_AGENTIDP_ENV: ${pair} is not K=V`)
  return [pair.slice(0, at), pair.slice(at + 1)]
}))

let config
try {
  config = benchConfig(schema, schemaUrl(schema), {
    ISSUER_URL: issuer,
    PORT: String(port),
    RATE_LIMIT_TOKEN_PER_CLIENT: RAISED,
    TOKEN_MONTHLY_QUOTA: RAISED,
    ...extra
  }, { alg })
} catch (error) {
  const problems = Array.isArray(error.problems) ? error.problems.map((p) => `${p.variable} ${p.problem}`).join('; ') : error.message
  await announce({ unavailable: `configuration refused: ${problems}` })
  process.exit(0)
}
const app = await buildApp({ config })
await app.listen({ port, host: '127.0.0.1' })
onStop(() => app.close())
announce({ ready: true, alg, issuer, tokenPath: '/api/v1/token' })
