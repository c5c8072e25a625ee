import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import { randomUUID } from 'node:crypto'

/**
 * A stand-in for the part of HashiCorp Vault's HTTP API that plugins/vault.ts uses, written from
 * Vault's public API documentation (sys/health, auth/token/*, the KV v2 secrets engine), with the
 * documented JSON shapes and status codes:
 *
 * - GET  /v1/sys/health                      200 active; 503 sealed (body still describes the node)
 * - GET  /v1/auth/token/lookup-self          {data: {policies, renewable, ttl, …}}
 * - POST /v1/auth/token/renew-self           {auth: {lease_duration, renewable, …}}
 * - GET  /v1/<mount>/data/<path>[?version=N] {data: {data, metadata}}; 404 {errors: []}
 * - POST /v1/<mount>/data/<path>             {options: {cas}, data}; 400 on a cas mismatch
 * - GET  /v1/<mount>/metadata/<path>         {data: {current_version, versions, …}}
 * - LIST /v1/<mount>/metadata/<path>         {data: {keys}} (also GET ?list=true, as Vault accepts)
 * - DELETE /v1/<mount>/metadata/<path>       204: every version and the metadata are gone
 * - POST /v1/<mount>/destroy/<path>          {versions}: 204
 *
 * Node's http server refuses the LIST method (llhttp does not know it), and hashi-vault-js sends
 * LIST, so this is a small HTTP/1.1 server on node:net. One request per connection
 * (Connection: close) keeps the parser trivial.
 *
 * Fault switches: `sealed` (503 everywhere, as a sealed Vault answers), `forbidden` (403
 * permission denied on every authenticated path), `delayMs` (answers that late: a slow Vault),
 * `down()` / `up()` (the port refuses connections), `failNext(pathPattern)` (one write answers 500).
 */

interface Version { data: Record<string, unknown> | null, createdTime: string, deletionTime: string, destroyed: boolean }
interface Secret { versions: Map<number, Version>, currentVersion: number, createdTime: string, updatedTime: string }

export interface VaultStandIn {
  readonly address: string
  readonly token: string
  readonly mount: string
  sealed: boolean
  forbidden: boolean
  delayMs: number
  /** renewable tokens are renewed by the plugin's job */
  renewable: boolean
  /** the policy the token carries (lookup-self's `policies`) */
  policies: string[]
  /** the requests seen, as "METHOD /v1/path" (no bodies: tests count calls with it) */
  readonly requests: string[]
  /** the stored secrets, by path under the mount (tests inspect and plant them) */
  readonly secrets: Map<string, Secret>
  /** the latest version's data of a secret, or undefined */
  read (path: string): Record<string, unknown> | undefined
  /** plants a secret as a crashed or foreign writer would have left it */
  plant (path: string, data: Record<string, unknown>, createdTime?: Date): void
  /** the next request whose "METHOD /v1/path" matches answers `status` (500: a Vault-side failure; 403: a policy that refuses it) */
  failNext (pattern: RegExp, status?: 403 | 500): void
  renewals: number
  down (): Promise<void>
  up (): Promise<void>
  close (): Promise<void>
}

const STATUS_TEXT: Record<number, string> = { 200: 'OK', 204: 'No Content', 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 500: 'Internal Server Error', 503: 'Service Unavailable' }

function respond (socket: Socket, status: number, body?: unknown): void {
  const payload = body === undefined ? '' : JSON.stringify(body)
  const head = [`HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Status'}`, 'Connection: close', `Content-Length: ${Buffer.byteLength(payload)}`]
  if (payload !== '') head.push('Content-Type: application/json')
  socket.end(`${head.join('\r\n')}\r\n\r\n${payload}`)
}

interface Request { method: string, path: string, query: URLSearchParams, headers: Map<string, string>, body: unknown }

/** Reads one request off the socket: request line, headers, a Content-Length body. */
function readRequest (socket: Socket, onRequest: (request: Request) => void): void {
  let buffer = Buffer.alloc(0)
  socket.on('data', function onData (chunk: Buffer) {
    buffer = Buffer.concat([buffer, chunk])
    const end = buffer.indexOf('\r\n\r\n')
    if (end < 0) return
    const lines = buffer.subarray(0, end).toString('latin1').split('\r\n')
    const [method, target] = lines[0].split(' ')
    const headers = new Map<string, string>()
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':')
      if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
    }
    const length = Number(headers.get('content-length') ?? '0')
    if (buffer.length < end + 4 + length) return
    socket.off('data', onData)
    const raw = buffer.subarray(end + 4, end + 4 + length).toString('utf8')
    const url = new URL(target, 'http://vault.test')
    let body: unknown = null
    try { body = raw === '' ? null : JSON.parse(raw) } catch { body = undefined }
    onRequest({ method, path: decodeURIComponent(url.pathname), query: url.searchParams, headers, body })
  })
  socket.on('error', () => {})
}

export async function startVaultStandIn (options: { mount?: string, token?: string, port?: number } = {}): Promise<VaultStandIn> {
  const mount = options.mount ?? 'secret'
  const token = options.token ?? `hvs.${randomUUID().replace(/-/g, '')}`
  const secrets = new Map<string, Secret>()
  const failures: Array<{ pattern: RegExp, status: 403 | 500 }> = []
  const sockets = new Set<Socket>()
  let server: Server
  let port = options.port ?? 0

  const state: VaultStandIn = {
    address: '',
    token,
    mount,
    sealed: false,
    forbidden: false,
    delayMs: 0,
    renewable: true,
    policies: ['default', 'agentidp'],
    requests: [],
    secrets,
    renewals: 0,
    read (path) {
      const secret = secrets.get(path)
      return secret === undefined ? undefined : secret.versions.get(secret.currentVersion)?.data ?? undefined
    },
    plant (path, data, createdTime = new Date()) {
      write(path, data, undefined, createdTime)
    },
    failNext (pattern, status = 500) { failures.push({ pattern, status }) },
    async down () {
      await new Promise<void>((resolve) => { server.close(() => resolve()); for (const socket of sockets) socket.destroy() })
    },
    async up () { await listen() },
    async close () { await state.down().catch(() => {}) }
  }

  const now = () => new Date().toISOString()
  const metadataOf = (version: number, entry: Version) => ({
    created_time: entry.createdTime, custom_metadata: null, deletion_time: entry.deletionTime, destroyed: entry.destroyed, version
  })

  function write (path: string, data: Record<string, unknown>, cas: number | undefined, at = new Date()): { status: number, body: unknown } {
    const existing = secrets.get(path)
    const current = existing?.currentVersion ?? 0
    if (cas !== undefined && cas !== current) {
      return { status: 400, body: { errors: ['check-and-set parameter did not match the current version'] } }
    }
    const secret = existing ?? { versions: new Map(), currentVersion: 0, createdTime: at.toISOString(), updatedTime: at.toISOString() }
    const version = current + 1
    const entry: Version = { data, createdTime: at.toISOString(), deletionTime: '', destroyed: false }
    secret.versions.set(version, entry)
    secret.currentVersion = version
    secret.updatedTime = at.toISOString()
    secrets.set(path, secret)
    return { status: 200, body: { request_id: randomUUID(), lease_id: '', renewable: false, lease_duration: 0, data: metadataOf(version, entry), wrap_info: null, warnings: null, auth: null } }
  }

  function envelope (data: unknown) {
    return { request_id: randomUUID(), lease_id: '', renewable: false, lease_duration: 0, data, wrap_info: null, warnings: null, auth: null }
  }

  function handle (request: Request): { status: number, body?: unknown } {
    const { method, path, query } = request
    if (path === '/v1/sys/health' && method === 'GET') {
      const body = { initialized: true, sealed: state.sealed, standby: false, performance_standby: false, replication_performance_mode: 'disabled', replication_dr_mode: 'disabled', server_time_utc: Math.floor(Date.now() / 1000), version: '1.17.0', cluster_name: 'vault-cluster-standin', cluster_id: 'standin' }
      return { status: state.sealed ? 503 : 200, body }
    }
    if (state.sealed) return { status: 503, body: { errors: ['Vault is sealed'] } }
    if (request.headers.get('x-vault-token') !== token || state.forbidden) return { status: 403, body: { errors: ['permission denied'] } }

    if (path === '/v1/auth/token/lookup-self' && method === 'GET') {
      return { status: 200, body: envelope({ accessor: 'standin-accessor', creation_time: 0, creation_ttl: 3600, display_name: 'token', entity_id: '', expire_time: null, explicit_max_ttl: 0, id: token, issue_time: now(), meta: null, num_uses: 0, orphan: true, path: 'auth/token/create', policies: state.policies, renewable: state.renewable, ttl: 3600, type: 'service' }) }
    }
    if (path === '/v1/auth/token/renew-self' && method === 'POST') {
      if (!state.renewable) return { status: 400, body: { errors: ['lease is not renewable'] } }
      state.renewals += 1
      return { status: 200, body: { ...envelope(null), auth: { client_token: token, accessor: 'standin-accessor', policies: state.policies, token_policies: state.policies, metadata: null, lease_duration: 3600, renewable: true, entity_id: '', token_type: 'service', orphan: true } } }
    }

    const prefix = `/v1/${mount}/`
    if (!path.startsWith(prefix)) return { status: 404, body: { errors: [] } }
    const rest = path.slice(prefix.length)
    const slash = rest.indexOf('/')
    const area = slash < 0 ? rest : rest.slice(0, slash)
    const key = slash < 0 ? '' : rest.slice(slash + 1)

    if (area === 'data' && method === 'GET') {
      const secret = secrets.get(key)
      const version = query.has('version') && query.get('version') !== '0' ? Number(query.get('version')) : secret?.currentVersion
      const entry = version === undefined ? undefined : secret?.versions.get(version)
      if (secret === undefined || entry === undefined) return { status: 404, body: { errors: [] } }
      // Vault answers a deleted or destroyed version with 404 and its metadata, data null
      if (entry.destroyed || entry.deletionTime !== '') return { status: 404, body: envelope({ data: null, metadata: metadataOf(version as number, entry) }) }
      return { status: 200, body: envelope({ data: entry.data, metadata: metadataOf(version as number, entry) }) }
    }
    if (area === 'data' && (method === 'POST' || method === 'PUT')) {
      const body = request.body as { options?: { cas?: number }, data?: Record<string, unknown> } | null
      if (body === undefined || body === null || typeof body.data !== 'object' || body.data === null) return { status: 400, body: { errors: ['no data provided'] } }
      return write(key, body.data, body.options?.cas)
    }
    if (area === 'metadata' && (method === 'LIST' || (method === 'GET' && query.get('list') === 'true'))) {
      const folder = key === '' || key.endsWith('/') ? key : `${key}/`
      const keys = new Set<string>()
      for (const stored of secrets.keys()) {
        if (!stored.startsWith(folder)) continue
        const tail = stored.slice(folder.length)
        const cut = tail.indexOf('/')
        keys.add(cut < 0 ? tail : tail.slice(0, cut + 1))
      }
      if (keys.size === 0) return { status: 404, body: { errors: [] } }
      return { status: 200, body: envelope({ keys: [...keys].sort() }) }
    }
    if (area === 'metadata' && method === 'GET') {
      const secret = secrets.get(key)
      if (secret === undefined) return { status: 404, body: { errors: [] } }
      const versions: Record<string, unknown> = {}
      for (const [number, entry] of secret.versions) versions[String(number)] = { created_time: entry.createdTime, deletion_time: entry.deletionTime, destroyed: entry.destroyed }
      const numbers = [...secret.versions.keys()]
      return { status: 200, body: envelope({ cas_required: false, created_time: secret.createdTime, current_version: secret.currentVersion, custom_metadata: null, delete_version_after: '0s', max_versions: 0, oldest_version: Math.min(...numbers), updated_time: secret.updatedTime, versions }) }
    }
    if (area === 'metadata' && method === 'DELETE') {
      secrets.delete(key)
      return { status: 204 }
    }
    if (area === 'destroy' && (method === 'POST' || method === 'PUT')) {
      const versions = (request.body as { versions?: number[] } | null)?.versions
      if (!Array.isArray(versions)) return { status: 400, body: { errors: ['no version number provided'] } }
      const secret = secrets.get(key)
      for (const version of versions) {
        const entry = secret?.versions.get(version)
        if (entry !== undefined) { entry.destroyed = true; entry.data = null }
      }
      return { status: 204 }
    }
    return { status: 405, body: { errors: [`unsupported operation`] } }
  }

  async function listen (): Promise<void> {
    server = createServer(function onConnection (socket) {
      sockets.add(socket)
      socket.unref()
      socket.on('close', () => sockets.delete(socket))
      readRequest(socket, function onRequest (request) {
        const line = `${request.method} ${request.path}`
        state.requests.push(line)
        const failure = failures.findIndex((entry) => entry.pattern.test(line))
        const injected = failure >= 0 ? failures.splice(failure, 1)[0].status : null
        const answer = injected === null ? handle(request)
          : { status: injected, body: { errors: [injected === 403 ? 'permission denied' : '1 error occurred:\n\t* injected failure\n\n'] } }
        const send = () => { if (!socket.destroyed) respond(socket, answer.status, answer.body) }
        if (state.delayMs > 0) setTimeout(send, state.delayMs).unref()
        else send()
      })
    })
    // never what keeps a test process alive: tests end by closing their apps, not this
    server.unref()
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => { server.off('error', reject); resolve() })
    })
    port = (server.address() as AddressInfo).port
    ;(state as { address: string }).address = `http://127.0.0.1:${port}`
  }

  await listen()
  return state
}
