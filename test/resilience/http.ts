import { Agent, request as httpRequest, type IncomingHttpHeaders } from 'node:http'

/**
 * A small HTTP client for the resilience files that fire many concurrent requests at the compiled
 * server (races, abuse): keep-alive connections, a generous per-request deadline (a loaded machine
 * must not turn a slow answer into a failure), and a tally of every answer — statuses, the 5xx that
 * are not documented 503s, requests that got no answer at all.
 */
export interface Answer { status: number, body: string, headers: IncomingHttpHeaders, ms: number }

export interface Http {
  send (base: string, method: string, path: string, headers?: Record<string, string>, body?: string): Promise<Answer>
  /** requests sent so far */
  readonly sent: number
  /** status (or "no answer") → count */
  readonly statuses: Map<string, number>
  /** 5xx answers other than 503, with the request line and the start of the body */
  readonly serverErrors: string[]
  close (): void
}

export function createHttp (maxSockets = 256, timeoutMs = 120_000): Http {
  const agent = new Agent({ keepAlive: true, maxSockets })
  const statuses = new Map<string, number>()
  const serverErrors: string[] = []
  let sent = 0
  const tally = (key: string) => statuses.set(key, (statuses.get(key) ?? 0) + 1)
  return {
    send (base, method, path, headers = {}, body) {
      sent += 1
      const started = performance.now()
      return new Promise<Answer>((resolve, reject) => {
        const req = httpRequest(`${base}${path}`, {
          method, agent, headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) }
        }, (res) => {
          let text = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => { text += chunk })
          res.on('end', () => {
            const status = res.statusCode ?? 0
            tally(String(status))
            if (status >= 500 && status !== 503) serverErrors.push(`${method} ${path} → ${status} ${text.slice(0, 200)}`)
            resolve({ status, body: text, headers: res.headers, ms: performance.now() - started })
          })
          res.on('error', reject)
        })
        req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)))
        req.on('error', (error) => { tally('no answer'); reject(error) })
        req.end(body)
      })
    },
    get sent () { return sent },
    statuses,
    serverErrors,
    close () { agent.destroy() }
  }
}

/** "200×12 401×3": a status tally, in status order. */
export function statusLine (statuses: Map<string, number>): string {
  return [...statuses].sort(([a], [b]) => a.localeCompare(b)).map(([status, count]) => `${status}×${count}`).join(' ')
}

/** The claims of a JWT (unverified: the server's own token, read to know what it says). */
export function claimsOf (token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')) as Record<string, unknown>
}

/** Distinct client addresses (behind TRUST_PROXY, sent as X-Forwarded-For): 10.<block>.x.y, one per call. */
export function addresses (block: number): () => string {
  let next = 0
  return () => {
    next += 1
    return `10.${block}.${Math.floor(next / 250) % 250}.${(next % 250) + 1}`
  }
}

export interface RegisteredClient { agentId: string, credentialId: string, secret: string }

/** Registers `agent` (as the admin) and generates its credential, over HTTP; a refusal throws. */
export async function registerOverHttp (http: Http, base: string, adminHeaders: Record<string, string>, agent: Record<string, unknown>): Promise<RegisteredClient> {
  const created = await http.send(base, 'POST', '/api/v1/agents', { ...adminHeaders, 'content-type': 'application/json' }, JSON.stringify(agent))
  if (created.status !== 201) throw new Error(`agent refused: ${created.status} ${created.body}`)
  const agentId = (JSON.parse(created.body) as { agentId: string }).agentId
  const credential = await http.send(base, 'POST', `/api/v1/agents/${agentId}/credentials`, adminHeaders)
  if (credential.status !== 201) throw new Error(`credential refused: ${credential.status} ${credential.body}`)
  const { credentialId, clientSecret } = JSON.parse(credential.body) as { credentialId: string, clientSecret: string }
  return { agentId, credentialId, secret: clientSecret }
}
