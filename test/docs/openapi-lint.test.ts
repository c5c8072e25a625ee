import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { projectRoot } from '../../lib/paths.js'
import { build } from '../helper.js'

/**
 * Redocly's recommended ruleset finds nothing in the generated document: no error, no warning
 * (issue 14). Run on /docs/json as the server serves it, from a directory without a redocly.yaml,
 * so that the ruleset is exactly `recommended`.
 */
const run = promisify(execFile)
const redocly = join(projectRoot, 'node_modules', '.bin', 'redocly')

interface LintReport { totals: { errors: number, warnings: number }, problems: Array<{ ruleId: string, message: string, location: Array<{ pointer: string }> }> }

async function lint (document: string): Promise<LintReport> {
  const directory = await mkdtemp(join(tmpdir(), 'agentidp-openapi-'))
  try {
    const file = join(directory, 'openapi.json')
    await writeFile(file, document)
    // lint exits 1 when it finds errors: the report on stdout is what matters either way
    const { stdout } = await run(redocly, ['lint', file, '--extends=recommended', '--format=json'], {
      cwd: directory,
      env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_COLOR: '1' },
      maxBuffer: 16 * 1024 * 1024
    }).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }))
    return JSON.parse(stdout) as LintReport
  } finally {
    await rm(directory, { recursive: true, force: true })
  }
}

function summary (report: LintReport): string[] {
  return report.problems.map((problem) => `${problem.ruleId} at ${problem.location[0]?.pointer}: ${problem.message}`)
}

for (const [what, env] of [
  ['the default configuration', {}],
  ['METRICS_TOKEN set, an issuer with a path, https', { METRICS_TOKEN: 'm'.repeat(40), ISSUER_URL: 'https://idp.example.org/idp' }]
] as const) {
  t.test(`redocly lint (recommended): 0 errors and 0 warnings, ${what}`, async (t) => {
    const app = await build(t, { env })
    const res = await app.inject({ method: 'GET', url: '/docs/json' })
    t.equal(res.statusCode, 200)
    const report = await lint(res.body)
    t.same(summary(report), [], 'no problem reported')
    t.equal(report.totals.errors, 0, 'errors')
    t.equal(report.totals.warnings, 0, 'warnings')
  })
}
