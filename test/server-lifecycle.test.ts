import { connect } from 'node:net'
import t, { type Test } from 'tap'
import { createSchema, testEnv } from './helper.js'
import { baseEnv, compiledServer, ensureBuild, isListening, sparePort, startProcess, waitFor, type RunningProcess } from './support/private-services.js'

/**
 * The process's own connection handling, as a real server on a real port (issue 11, defects 10
 * and 11): a request that never completes is bounded by REQUEST_TIMEOUT_MS, and SIGTERM drains —
 * requests in progress finish, stalled connections are cut, the exit is 0 within SHUTDOWN_GRACE_MS.
 */
await ensureBuild()
const { databaseUrl } = await createSchema(t)

async function startServer (t: Test, overrides: Record<string, string> = {}): Promise<{ server: RunningProcess, port: number }> {
  const port = await sparePort()
  const env = { ...baseEnv(), ...testEnv(databaseUrl), NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(port), LOG_LEVEL: 'warn', ...overrides }
  const server = startProcess(t, process.execPath, [compiledServer], { env })
  await waitFor(`the server on port ${port}`, async () => {
    if (server.child.exitCode !== null) throw new Error(`exited ${server.child.exitCode}: ${server.stderr}`)
    return await fetch(`http://127.0.0.1:${port}/health/live`).then((response) => response.ok, () => false)
  }, 60_000)
  return { server, port }
}

interface RawConnection {
  send (text: string): void
  received (): string
  /** resolves once the server closed the connection, with how long after opening */
  closed: Promise<number>
}

/** A raw HTTP/1.1 connection: what a slow or stalled client looks like. */
function rawConnection (port: number, first: string): RawConnection {
  const socket = connect(port, '127.0.0.1')
  const opened = Date.now()
  let data = ''
  socket.on('data', (chunk) => { data += chunk.toString('utf8') })
  socket.on('error', () => {})
  socket.write(first)
  return {
    send: (text) => { socket.write(text) },
    received: () => data,
    closed: new Promise((resolve) => { socket.on('close', () => { resolve(Date.now() - opened) }) })
  }
}

const STALLED_BODY = 'POST /api/v1/token HTTP/1.1\r\nHost: idp.test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"grant_'

t.test('a body that never completes is answered 408 problem+json and disconnected after REQUEST_TIMEOUT_MS', async (t) => {
  const { port } = await startServer(t, { REQUEST_TIMEOUT_MS: '2000' })
  const stalled = rawConnection(port, STALLED_BODY)

  const afterMs = await stalled.closed

  t.match(stalled.received(), /^HTTP\/1\.1 408 /, 'a 408 status line')
  t.match(stalled.received(), /content-type: application\/problem\+json/i)
  t.match(stalled.received(), /"status":408/)
  t.ok(afterMs >= 1900, `not before the timeout (${afterMs} ms)`)
  t.ok(afterMs < 30_000, `bounded: closed after ${afterMs} ms, not Node's 300 s`)
})

t.test('SIGTERM: a request on an accepted connection is served, a stalled one is cut, new connections are refused, exit 0 within the grace period', async (t) => {
  const { server, port } = await startServer(t, { SHUTDOWN_GRACE_MS: '4000', REQUEST_TIMEOUT_MS: '60000' })
  const stalled = rawConnection(port, STALLED_BODY)
  const keptAlive = rawConnection(port, 'GET /health/live HTTP/1.1\r\nHost: idp.test\r\n\r\n')
  await waitFor('the first answer on the keep-alive connection', () => keptAlive.received().includes('{"status":"ok"}'), 10_000, 20)
  // the next request goes out on the same connection while the server is closing
  const signalled = Date.now()
  server.child.kill('SIGTERM')
  keptAlive.send('GET /health/live HTTP/1.1\r\nHost: idp.test\r\nConnection: close\r\n\r\n')

  const { code } = await server.exited
  const exitMs = Date.now() - signalled

  t.equal(code, 0, 'exit 0', { stderr: server.stderr })
  t.ok(exitMs < 4000 + 2000, `within the grace period (${exitMs} ms)`)
  t.notMatch(keptAlive.received(), /\b503\b/, 'no 503 "server is closing" on a connection accepted before the signal')
  await stalled.closed
  t.pass('the stalled connection was closed')
  t.notOk(await isListening(port), 'new connections are refused')
  t.notMatch(server.stderr, /shutdown (failed|did not finish)/)
})

t.test('requests Node cannot parse get problem+json 400/431, and even at LOG_LEVEL=trace no raw request bytes or Authorization value reach the log', async (t) => {
  const { server, port } = await startServer(t, { LOG_LEVEL: 'trace' })
  const secret = 'S3cr3t-in-a-malformed-request-0123456789'
  const authorization = `Basic ${Buffer.from(`agent:${secret}`).toString('base64')}`
  // a space in the header name is a parse error: Node hands the raw bytes to its clientError handler
  const malformed = rawConnection(port, `POST /api/v1/token HTTP/1.1\r\nHost: idp.test\r\nAuthorization: ${authorization}\r\nBad Header: x\r\n\r\n`)
  const oversized = rawConnection(port, `GET /health/live HTTP/1.1\r\nHost: idp.test\r\nAuthorization: ${authorization}\r\nX-Padding: ${'a'.repeat(20_000)}\r\n\r\n`)
  await Promise.all([malformed.closed, oversized.closed])

  t.match(malformed.received(), /^HTTP\/1\.1 400 /, 'a 400 status line')
  t.match(oversized.received(), /^HTTP\/1\.1 431 /, 'a 431 status line')
  for (const answer of [malformed.received(), oversized.received()]) {
    t.match(answer, /content-type: application\/problem\+json/i, 'a problem+json body')
    t.match(answer, /"code":"VALIDATION_ERROR"/)
  }
  // the log is read after the server has seen both requests: a live probe is logged after them
  await waitFor('the trace log of the requests', () => /client error/.test(server.stdout), 20_000, 50)
  t.notMatch(server.stdout, /rawPacket/, 'no raw request bytes in the log')
  for (const value of [secret, authorization, authorization.slice('Basic '.length)]) {
    t.notOk(server.stdout.includes(value) || server.stderr.includes(value), 'the Authorization value appears in no log line')
  }
})
