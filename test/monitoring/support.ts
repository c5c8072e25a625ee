import { PerformanceObserver } from 'node:perf_hooks'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { projectRoot } from '../../lib/paths.js'
import type { TestApp } from '../helper.js'
import { accessToken, bootstrapClient, credentialsUrl, registerClient, requestToken } from '../routes/oauth/support.js'

/**
 * Shared by the monitoring tests (not a test file itself): a parser for the Prometheus text format,
 * a scrape of GET /metrics, traffic that touches every metric, and where promtool is.
 */

export interface Sample { name: string, labels: Record<string, string>, value: number }

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? +(\S+)(?: +\d+)?$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g

/** The samples of a text exposition (format 0.0.4); comments are skipped. */
export function parseExposition (text: string): Sample[] {
  const samples: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = SAMPLE.exec(line)
    if (match === null) throw new Error(`not a sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const label of (match[2] ?? '').matchAll(LABEL)) {
      labels[label[1]] = label[2].replace(/\\n/g, '\n').replace(/\\"/g, '"').replace(/\\\\/g, '\\')
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) })
  }
  return samples
}

export interface Scrape { text: string, samples: Sample[] }

export async function scrape (app: TestApp, headers: Record<string, string> = {}): Promise<Scrape> {
  const res = await app.inject({ method: 'GET', url: '/metrics', headers })
  if (res.statusCode !== 200) throw new Error(`GET /metrics answered ${res.statusCode}: ${res.body}`)
  return { text: res.body, samples: parseExposition(res.body) }
}

/** The value of the one sample of `name` whose labels include `labels`, 0 when there is none. */
export function valueOf (scraped: Scrape, name: string, labels: Record<string, string> = {}): number {
  const matching = scraped.samples.filter((sample) => sample.name === name &&
    Object.entries(labels).every(([key, value]) => sample.labels[key] === value))
  if (matching.length > 1) throw new Error(`${matching.length} samples of ${name} match ${JSON.stringify(labels)}`)
  return matching[0]?.value ?? 0
}

/** The distinct values of `label` across the samples of `name`. */
export function labelValues (scraped: Scrape, name: string, label: string): string[] {
  return [...new Set(scraped.samples.filter((sample) => sample.name === name).map((sample) => sample.labels[label]))].sort()
}

/** Sample names, and for each TYPE line the family name: what PromQL may select. */
export function seriesNames (scraped: Scrape): Set<string> {
  const names = new Set(scraped.samples.map((sample) => sample.name))
  for (const match of scraped.text.matchAll(/^# TYPE (\S+) (\w+)$/gm)) names.add(match[1])
  return names
}

/**
 * Traffic that gives every metric samples: agents registered in two environments, tokens (one
 * failed authentication), a management call, a credential rotation (a PUBLISH), /health, a 404.
 */
export async function everyMetricTraffic (app: TestApp): Promise<void> {
  const admin = await bootstrapClient(app)
  const staging = await registerClient(app, admin.headers, { deploymentEnv: 'staging', capabilities: ['docs:read'] })
  await registerClient(app, admin.headers, { deploymentEnv: 'production', capabilities: ['docs:read'] })
  await accessToken(app, staging)
  await requestToken(app, { agentId: staging.agentId, secret: `${staging.secret.slice(0, -4)}AAAA` })
  await app.inject({ method: 'GET', url: '/api/v1/agents', headers: admin.headers })
  await app.inject({ method: 'POST', url: `${credentialsUrl(staging.agentId)}/${staging.credentialId}/rotate`, headers: admin.headers })
  await app.inject({ method: 'GET', url: '/health' })
  await app.inject({ method: 'GET', url: '/no/such/path' })
  await collectGarbage()
}

/**
 * nodejs_gc_duration_seconds appears only after a garbage collection, and a short test may finish
 * before the first one. Allocates short-lived garbage until a GC is observed (the same
 * PerformanceObserver entries prom-client's collector receives), then lets the observers run.
 */
async function collectGarbage (): Promise<void> {
  let observed = false
  const observer = new PerformanceObserver(() => { observed = true })
  observer.observe({ entryTypes: ['gc'] })
  const deadline = Date.now() + 30_000
  try {
    while (!observed && Date.now() < deadline) {
      for (let round = 0; round < 5; round += 1) new Array(100_000).fill(round)
      await new Promise((resolve) => setImmediate(resolve))
    }
  } finally {
    observer.disconnect()
  }
  await new Promise((resolve) => setImmediate(resolve))
}

/**
 * promtool: $PROMTOOL, else what .ci/run unpacks into .tools/, else one on PATH. Absent outside CI,
 * the checks skip with a message; in CI (CI=1, set by .ci/run) they fail.
 */
export function findPromtool (): string | null {
  const candidates = [process.env.PROMTOOL, join(projectRoot, '.tools/prometheus/usr/bin/promtool')]
  for (const candidate of candidates) if (candidate !== undefined && candidate !== '' && existsSync(candidate)) return candidate
  try {
    execFileSync('promtool', ['--version'], { stdio: 'ignore' })
    return 'promtool'
  } catch {
    return null
  }
}

export const IN_CI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== '0' && process.env.CI !== 'false'

export const MONITORING_DIR = join(projectRoot, 'ops/monitoring')
