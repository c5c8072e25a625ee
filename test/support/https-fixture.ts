/**
 * Real local servers for the remote-document tests: an https server with a certificate made by
 * the openssl binary for the test run, whose routes a test sets and whose requests it counts.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer as createHttpsServer } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const execFileAsync = promisify(execFile)

export interface Certificate { cert: string, key: string }

/** A self-signed P-256 certificate valid for the given subjectAltName (e.g. `DNS:localhost,IP:127.0.0.1`). */
export async function selfSignedCertificate (subjectAltName: string): Promise<Certificate> {
  const dir = await mkdtemp(join(tmpdir(), 'agentidp-cert-'))
  try {
    const keyFile = join(dir, 'key.pem')
    const certFile = join(dir, 'cert.pem')
    await execFileAsync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=agentidp test',
      '-addext', `subjectAltName=${subjectAltName}`
    ], { timeout: 30_000 })
    return { cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8') }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

export type Route = (request: IncomingMessage, response: ServerResponse) => void

export interface TestServer {
  port: number
  /** `https://127.0.0.1:<port>` */
  origin: string
  routes: Map<string, Route>
  /** Requests received, by path (query included). */
  hits: (path: string) => number
  lastRequest: (path: string) => IncomingMessage | undefined
  close: () => Promise<void>
}

export async function startHttpsServer (certificate: Certificate): Promise<TestServer> {
  const routes = new Map<string, Route>()
  const hits = new Map<string, number>()
  const requests = new Map<string, IncomingMessage>()
  const server = createHttpsServer(certificate, (request, response) => {
    const path = request.url ?? '/'
    hits.set(path, (hits.get(path) ?? 0) + 1)
    requests.set(path, request)
    const route = routes.get(path)
    if (route === undefined) {
      response.writeHead(404).end()
    } else {
      route(request, response)
    }
  })
  const port = await listen(server)
  return {
    port,
    origin: `https://127.0.0.1:${port}`,
    routes,
    hits: (path) => hits.get(path) ?? 0,
    lastRequest: (path) => requests.get(path),
    close: async () => {
      server.closeAllConnections() // stalled responses too
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

/** A TCP server that accepts connections and never says a word: a TLS handshake with it stalls. */
export async function startSilentServer (): Promise<{ port: number, close: () => Promise<void> }> {
  const sockets = new Set<Socket>()
  const server = createTcpServer((socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  const port = await listen(server)
  return {
    port,
    close: async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  }
}

async function listen (server: { listen: (port: number, host: string, done: () => void) => unknown, address: () => AddressInfo | string | null }): Promise<number> {
  await new Promise<void>((resolve) => { server.listen(0, '127.0.0.1', resolve) })
  return (server.address() as AddressInfo).port
}

/** A JSON route: the body as given (a string or bytes are sent as they are), with extra headers. */
export function json (body: unknown, headers: Record<string, string> = {}): Route {
  const bytes = typeof body === 'string' || Buffer.isBuffer(body) ? Buffer.from(body) : Buffer.from(JSON.stringify(body))
  return (_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json', 'content-length': String(bytes.length), ...headers }).end(bytes)
  }
}
