// Starting and stopping the servers under bench/servers/, each a process of its own (so its CPU
// can be read from /proc and no heap is shared with the load generator). stdout — the product's
// pino logs, as deployed — goes to a file; stderr is kept for the report of a failed start; the
// ready message comes over the IPC channel.
import { spawn } from 'node:child_process'
import { closeSync, openSync, statSync } from 'node:fs'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'

/** A TCP port free at this moment on 127.0.0.1. */
export function freePort () {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/**
 * Starts bench/servers/<script> with `args` (its port first). Resolves with { pid, port, origin,
 * ready, unavailable, stop, logBytes } once it announced itself: `ready` is its message, or
 * `unavailable` the reason it gave for not serving (e.g. a configuration it does not support).
 */
export async function startServer (script, { port, args = [], logFile = '/dev/null', env = {} }) {
  const logFd = openSync(logFile, 'a')
  const child = spawn(process.execPath, [fileURLToPath(new URL(`../servers/${script}`, import.meta.url)), String(port), ...args], {
    stdio: ['ignore', logFd, 'pipe', 'ipc'],
    // as deployed (Koa, under oidc-provider, reads NODE_ENV too)
    env: { ...process.env, NODE_ENV: 'production', ...env }
  })
  closeSync(logFd)
  let stderr = ''
  let started = false
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-4000)
    if (started) process.stderr.write(`[${script} ${args.join(' ')}] ${chunk}`)
  })
  const message = await new Promise((resolve, reject) => {
    child.once('exit', (code, signal) => {
      const error = new Error(`${script} ${args.join(' ')} exited (${code ?? signal}) before it was ready:\n${stderr.trim()}`)
      // the line that names the error, for a one-line report
      error.summary = stderr.split('\n').find((line) => /^\w*(Error|Invalid)\b.*:/.test(line.trim()))?.trim() ?? `exited (${code ?? signal})`
      reject(error)
    })
    child.on('message', (value) => { if (value?.ready === true || typeof value?.unavailable === 'string') resolve(value) })
  })
  started = true
  const exited = new Promise((resolve) => { if (child.exitCode !== null) resolve(); else child.once('exit', resolve) })
  return {
    script,
    pid: child.pid,
    port,
    origin: `http://127.0.0.1:${port}`,
    ready: message.ready === true ? message : null,
    unavailable: message.unavailable ?? null,
    logFile,
    logBytes: () => { try { return statSync(logFile).size } catch { return null } },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
      await exited
      clearTimeout(timer)
    }
  }
}
