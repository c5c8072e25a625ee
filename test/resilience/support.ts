import { appendFileSync, mkdirSync } from 'node:fs'
import { Agent, request as httpRequest } from 'node:http'
import { join } from 'node:path'
import pg from 'pg'
import type { Test } from 'tap'
import { projectRoot } from '../../lib/paths.js'
import { testEnv } from '../helper.js'
import { baseEnv, compiledServer, sparePort, startProcess, waitFor, type RunningProcess } from '../support/private-services.js'

/**
 * Shared pieces of the resilience suite (issue 11; run with `npm run test:resilience`, not part of
 * `npm test`): the patterns that betray internals in a response, the figures file every test file
 * appends to and test/resilience/run.ts sums up, and the compiled server on a real port.
 */

/** Where each test file appends one JSON line of figures; run.ts empties it first and prints the summary. */
export const FIGURES_FILE = process.env.RESILIENCE_FIGURES ?? join(projectRoot, '.tap', 'resilience', 'figures.jsonl')

export interface Figures {
  /** the test file, e.g. "fuzz" */
  part: string
  /** requests sent, or cases run */
  inputsTried?: number
  /** faults injected that the server lived through */
  faultsSurvived?: number
  /** 5xx answers that are not documented 503s */
  serverErrors?: number
  /** secrets, tokens or internals found where they must not be */
  leaks?: number
  /** a 2xx without its audit event, or a state change lost between concurrent requests */
  racesLost?: number
  /** named verdicts, e.g. "p99 drift": "ok (1.1×)" */
  verdicts?: Record<string, string>
  [figure: string]: unknown
}

export function recordFigures (figures: Figures): void {
  mkdirSync(join(FIGURES_FILE, '..'), { recursive: true })
  appendFileSync(FIGURES_FILE, JSON.stringify({ ...figures, at: new Date().toISOString() }) + '\n')
}

/**
 * What a response must never show a client: stack frames, module paths, SQL, driver and runtime
 * error text. A match counts only when the request itself did not carry the same text (an echo of
 * the caller's own input is not an internal).
 */
const INTERNALS: Array<[string, RegExp]> = [
  ['stack frame', /\bat (?:async )?[\w.<>[\]]+ \(|\bat (?:file|node):|\(node:internal|:\d+:\d+\)/],
  ['module path', /node_modules|\/work\/|\/dist\/|\.ts:\d+|\.js:\d+/],
  ['SQL', /\bSELECT\b[^"]{0,200}\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b|syntax error at or near|\bSQLSTATE\b|violates (?:unique|foreign key|check|not-null) constraint|relation "|column "|invalid input syntax for|duplicate key value/i],
  ['driver text', /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ioredis|pg-protocol|node-postgres|Connection terminated|connection is closed|timeout exceeded when trying to connect/i],
  ['runtime error', /\b(?:TypeError|ReferenceError|RangeError|SyntaxError): |Cannot read propert|is not a function|undefined is not|Maximum call stack/]
]

/** The kinds of internals `text` shows that `request` did not itself contain. */
export function internalsIn (text: string, request = ''): string[] {
  const found: string[] = []
  for (const [kind, pattern] of INTERNALS) {
    const match = pattern.exec(text)
    if (match !== null && !request.includes(match[0])) found.push(`${kind}: ${JSON.stringify(match[0])}`)
  }
  return found
}

export interface SpawnedServer {
  server: RunningProcess
  port: number
  base: string
  pid: number
}

/**
 * The compiled server (`node dist/server.js`, as operators run it) on a spare port, with the test
 * environment plus `overrides`; resolves once /health/live answers. The child is node itself, so
 * its pid is the one /proc describes.
 */
export async function spawnServer (t: Test, databaseUrl: string, overrides: Record<string, string | undefined> = {}): Promise<SpawnedServer> {
  const port = await sparePort()
  const env = { ...baseEnv(), ...testEnv(databaseUrl), NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', ...overrides }
  const server = startProcess(t, process.execPath, [compiledServer], { env })
  const base = `http://127.0.0.1:${port}`
  await waitFor(`the server on port ${port}`, async () => {
    if (server.child.exitCode !== null) throw new Error(`exited ${server.child.exitCode}: ${server.stderr}`)
    return await fetch(`${base}/health/live`).then((response) => response.ok, () => false)
  }, 60_000)
  return { server, port, base, pid: server.child.pid as number }
}

/** The q-quantile (0..1) of `values`, nearest rank; NaN for none. */
export function quantile (values: number[], q: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

/** Least-squares slope of y over x. */
export function slope (points: Array<[number, number]>): number {
  const n = points.length
  if (n < 2) return 0
  const meanX = points.reduce((sum, [x]) => sum + x, 0) / n
  const meanY = points.reduce((sum, [, y]) => sum + y, 0) / n
  let numerator = 0
  let denominator = 0
  for (const [x, y] of points) {
    numerator += (x - meanX) * (y - meanY)
    denominator += (x - meanX) ** 2
  }
  return denominator === 0 ? 0 : numerator / denominator
}

export interface Answer { status: number, body: string, headers?: Record<string, string | string[] | undefined> }

export interface HttpClient {
  /** one request on the client's keep-alive agent; rejects when the connection is lost or nothing answers within `timeoutMs` */
  send (method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer>
  agent: Agent
}

/**
 * Requests to a spawned server over keep-alive connections (as a client library would send them):
 * the raw answer, whatever its status; a lost connection or no answer in time rejects.
 */
export function httpClient (t: Test, base: string, options: { maxSockets?: number, timeoutMs?: number } = {}): HttpClient {
  const agent = new Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 16 })
  const timeoutMs = options.timeoutMs ?? 15_000
  t.teardown(() => agent.destroy())
  const send = (method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = httpRequest(`${base}${path}`, { method, agent, headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => { text += chunk })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }))
        res.on('error', reject)
      })
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)))
      req.on('error', reject)
      req.end(body)
    })
  return { send, agent }
}

export const JSON_TYPE = { 'content-type': 'application/json' }
export const FORM_TYPE = { 'content-type': 'application/x-www-form-urlencoded' }

/** The audit rows whose User-Agent starts with `prefix`: User-Agent → actions (the suite's requests each carry a unique one). */
export async function auditedActions (databaseUrl: string, prefix: string): Promise<Map<string, string[]>> {
  const db = new pg.Client({ connectionString: databaseUrl })
  await db.connect()
  try {
    const { rows } = await db.query<{ user_agent: string, action: string }>('SELECT user_agent, action FROM audit_events WHERE starts_with(user_agent, $1)', [prefix])
    const byAgent = new Map<string, string[]>()
    for (const row of rows) byAgent.set(row.user_agent, [...(byAgent.get(row.user_agent) ?? []), row.action])
    return byAgent
  } finally {
    await db.end()
  }
}

/** A request the suite sent and how it was answered; `action` is the audit event a success must have written ('' for none: reads, health). */
export interface SentRequest { userAgent: string, action: string, status: number, error?: string, body?: string, at: number }

/** "200×12 503×3 no answer×1" */
export function statusCounts (entries: SentRequest[]): string {
  const byStatus = new Map<string, number>()
  for (const entry of entries) {
    const key = entry.error === undefined ? String(entry.status) : 'no answer'
    byStatus.set(key, (byStatus.get(key) ?? 0) + 1)
  }
  return [...byStatus].sort().map(([status, count]) => `${status}×${count}`).join(' ')
}

/**
 * The audit judgement of faults.test.ts for `entries`: every success has exactly one event of its
 * action (matched by its unique User-Agent), none is written twice. Returns how many were lost or
 * doubled (the races lost), and says how many 503s were committed all the same.
 */
export async function judgeAudit (t: Test, databaseUrl: string, prefix: string, entries: SentRequest[]): Promise<number> {
  const audited = await auditedActions(databaseUrl, prefix)
  const successes = entries.filter((entry) => entry.status >= 200 && entry.status < 300 && entry.action !== '')
  const count = (entry: SentRequest) => (audited.get(entry.userAgent) ?? []).filter((action) => action === entry.action).length
  const missing = successes.filter((entry) => count(entry) === 0)
  const doubled = entries.filter((entry) => count(entry) > 1)
  t.same(missing.map((entry) => `${entry.userAgent} ${entry.action} ${entry.status}`).slice(0, 10), [], `each of the ${successes.length} successes has its audit event`)
  t.same(doubled.map((entry) => entry.userAgent).slice(0, 10), [], 'no request wrote its event twice')
  const committedBut503 = entries.filter((entry) => entry.status === 503 && count(entry) > 0)
  if (committedBut503.length > 0) t.comment(`${committedBut503.length} requests answered 503 were committed all the same: ${committedBut503.slice(0, 3).map((entry) => entry.userAgent).join(', ')}`)
  return missing.length + doubled.length
}

/** A client_credentials token request's headers and body for `clientId`/`secret`. */
export function tokenRequest (clientId: string, secret: string, userAgent: string): { headers: Record<string, string>, body: string } {
  const basicValue = 'Basic ' + Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')
  return { headers: { authorization: basicValue, ...FORM_TYPE, 'user-agent': userAgent }, body: 'grant_type=client_credentials' }
}

export interface ChainVerification { intact: boolean, checked: number, firstBrokenEventId: string | null, events: number }

/**
 * GET /api/v1/audit/verify (through `verify`) until every audit event is sealed into the chain —
 * the sealer runs on an interval in every instance — or the chain is found broken; the last answer
 * with the number of events there were.
 */
export async function verifiedChain (databaseUrl: string, verify: () => Promise<Answer>, timeoutMs = 60_000): Promise<ChainVerification> {
  const db = new pg.Client({ connectionString: databaseUrl })
  await db.connect()
  let result: ChainVerification = { intact: false, checked: 0, firstBrokenEventId: null, events: 0 }
  try {
    await waitFor('every audit event sealed into the chain', async () => {
      const events = (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_events')).rows[0].n
      const answer = await verify()
      if (answer.status !== 200) return false
      result = { ...(JSON.parse(answer.body) as Omit<ChainVerification, 'events'>), events }
      return !result.intact || result.checked >= events
    }, timeoutMs, 250).catch(() => {})
  } finally {
    await db.end()
  }
  return result
}
