import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { projectRoot } from '../../lib/paths.js'
import { baseEnv, startProcess, waitFor, type RunningProcess } from './private-services.js'

/**
 * Runs the compiled `agentidp` (dist/cli/agentidp.js, the package.json `bin`) as an operator
 * would: a real process, only the variables given, stdout piped (so JSON is the default output).
 * Not a test file itself (tap runs only *.test.ts); the tests are test/cli/*.test.ts.
 */

interface Tap { teardown (fn: () => unknown): void }

export const compiledCli = join(projectRoot, 'dist', 'cli', 'agentidp.js')

export interface CliResult { code: number | null, stdout: string, stderr: string }

/** Runs `agentidp …args` to completion (killed after `timeoutMs`); `input` is written to its stdin. */
export async function agentidp (t: Tap, args: string[], options: { env?: Record<string, string | undefined>, input?: string, cwd?: string, timeoutMs?: number } = {}): Promise<CliResult> {
  const env = Object.fromEntries(Object.entries({ ...baseEnv(), ...options.env }).filter((entry): entry is [string, string] => entry[1] !== undefined))
  const child = spawn(process.execPath, [compiledCli, ...args], { env, cwd: options.cwd ?? projectRoot, stdio: ['pipe', 'pipe', 'pipe'], detached: true })
  const killGroup = () => { try { process.kill(-(child.pid as number), 'SIGKILL') } catch {} }
  t.teardown(killGroup)
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  child.stdin.end(options.input ?? '')
  const timer = setTimeout(killGroup, options.timeoutMs ?? 90_000)
  const code = await new Promise<number | null>((resolve) => child.once('close', (exitCode) => resolve(exitCode)))
  clearTimeout(timer)
  return { code, stdout, stderr }
}

/** The single JSON document a command printed on stdout. */
export function json<T = Record<string, unknown>> (result: CliResult): T {
  const lines = result.stdout.split('\n').filter(Boolean)
  if (lines.length !== 1) throw new Error(`expected one JSON line on stdout, got ${lines.length}: ${result.stdout}\nstderr: ${result.stderr}`)
  return JSON.parse(lines[0]) as T
}

/** `agentidp serve` (the production server) on `port`, healthy before this returns. */
export async function startServer (t: Tap, env: Record<string, string | undefined>, port: number, cwd?: string): Promise<RunningProcess> {
  const server = startProcess(t, process.execPath, [compiledCli, 'serve'], { env, cwd })
  await waitFor(`agentidp serve on port ${port}`, async () => {
    if (server.child.exitCode !== null) throw new Error(`exited ${server.child.exitCode}: ${server.stderr}`)
    const response = await fetch(`http://127.0.0.1:${port}/health/ready`, { signal: AbortSignal.timeout(2000) })
    await response.arrayBuffer()
    return response.status === 200
  }, 60_000, 200)
  return server
}
