import { execFile } from 'node:child_process'
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { build } from '../helper.js'
import { everyMetricTraffic, findPromtool, IN_CI, MONITORING_DIR, scrape } from './support.js'

/**
 * Prometheus's own checker on what we ship: `promtool check config` (prometheus.yml with the files
 * it names), `check rules` and `test rules` (rules.yml and its unit tests), and `check metrics` on a
 * real scrape of GET /metrics after traffic. promtool comes from Debian's prometheus package,
 * unpacked into .tools/ by .ci/run; in CI its absence fails these tests, elsewhere they skip.
 */

const promtool = findPromtool()

interface Run { code: number, stdout: string, stderr: string }

function run (args: string[], options: { cwd?: string, input?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    if (promtool === null) return reject(new Error('promtool is missing'))
    const child = execFile(promtool, args, { cwd: options.cwd ?? MONITORING_DIR, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1
      resolve({ code, stdout, stderr })
    })
    child.stdin?.end(options.input ?? '')
  })
}

function passes (t: Test, result: Run, what: string): void {
  t.equal(result.code, 0, what, { output: `${result.stdout}\n${result.stderr}` })
}

if (promtool === null) {
  const message = 'promtool not found: run .ci/run (it unpacks Debian\'s prometheus package into .tools/) or set PROMTOOL'
  if (IN_CI) t.fail(message)
  else t.plan(0, message)
} else {
  t.test('promtool check config: prometheus.yml, with the token file compose mounts beside it', async (t) => {
    // the credentials file is a compose secret at run time; here a placeholder stands in for it
    const directory = await mkdtemp(join(tmpdir(), 'agentidp-prometheus-'))
    t.teardown(() => rm(directory, { recursive: true, force: true }))
    for (const file of ['prometheus.yml', 'rules.yml']) await copyFile(join(MONITORING_DIR, file), join(directory, file))
    await writeFile(join(directory, 'metrics-token'), 'placeholder-token-for-promtool-check-config\n')
    const result = await run(['check', 'config', 'prometheus.yml'], { cwd: directory })
    passes(t, result, 'valid')
    t.match(result.stdout, /SUCCESS: 1 rule files found/)
  })

  t.test('promtool check rules: rules.yml', async (t) => {
    const result = await run(['check', 'rules', 'rules.yml'])
    passes(t, result, 'valid')
    t.match(result.stdout, /SUCCESS: \d+ rules found/)
  })

  t.test('promtool test rules: every alert fires on its symptom and stays quiet on healthy traffic', async (t) => {
    passes(t, await run(['test', 'rules', 'rules.test.yml']), 'rules.test.yml passes')
  })

  t.test('promtool check metrics: a real scrape of GET /metrics after traffic', async (t) => {
    const app = await build(t)
    await everyMetricTraffic(app)
    const scraped = await scrape(app)
    t.ok(scraped.samples.some((sample) => sample.name === 'agentidp_tokens_issued_total'), 'the scrape holds traffic')
    passes(t, await run(['check', 'metrics'], { input: scraped.text }), 'no lint problems')
  })

  t.test('promtool itself rejects what it should (the checks are not vacuous)', async (t) => {
    t.not((await run(['check', 'metrics'], { input: '# TYPE thing_total gauge\nthing_total 1\n' })).code, 0, 'a gauge named _total')
    const directory = await mkdtemp(join(tmpdir(), 'agentidp-rules-'))
    t.teardown(() => rm(directory, { recursive: true, force: true }))
    await writeFile(join(directory, 'bad.yml'), 'groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: sum(rate(x[5m]) > \n')
    t.not((await run(['check', 'rules', 'bad.yml'], { cwd: directory })).code, 0, 'a broken expression')
  })
}
