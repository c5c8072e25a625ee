import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import t from 'tap'
import { projectRoot } from '../../lib/paths.js'
import { baseEnv, ensureBuild, startProcess, waitFor } from '../support/private-services.js'

/**
 * The server's stdout is written in blocks (lib/logger.ts): a lone line still reaches the collector
 * while the process runs, and lines pending when the process exits are all written, in order.
 */
t.test('buffered stdout: a lone line arrives while the process runs; a burst pending at process.exit arrives whole and in order', async (t) => {
  await ensureBuild()
  const dir = mkdtempSync(join(tmpdir(), 'agentidp-log-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const go = join(dir, 'go')
  const logger = pathToFileURL(join(projectRoot, 'dist', 'lib', 'logger.js')).href
  const script = `
    import pino from 'pino'
    import { existsSync } from 'node:fs'
    import { loggerOptions } from ${JSON.stringify(logger)}
    const options = loggerOptions({ LOG_LEVEL: 'info', LOG_FORMAT: 'json' })
    const log = pino(options, options.stream)
    log.info('first')
    // waits for the test to have seen 'first', then logs a burst and exits at once
    const poll = setInterval(() => {
      if (!existsSync(${JSON.stringify(go)})) return
      clearInterval(poll)
      for (let n = 0; n < 2000; n += 1) log.info({ n }, 'burst')
      process.exit(0)
    }, 20)
  `
  const child = startProcess(t, process.execPath, ['--input-type=module', '-e', script], { env: baseEnv(), cwd: projectRoot })
  await waitFor('the first line on stdout', () => child.stdout.includes('"msg":"first"'))
  t.pass('the lone line arrived while the process was still running')
  writeFileSync(go, '')
  const { code } = await child.exited
  t.equal(code, 0, child.stderr)
  const lines = child.stdout.trim().split('\n').map((line) => JSON.parse(line) as { msg: string, n?: number })
  t.equal(lines.length, 2001, 'every line')
  t.same(lines.slice(1).map((line) => line.n), Array.from({ length: 2000 }, (_, n) => n), 'in order')
})
