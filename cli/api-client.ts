import { Option, type Command } from 'commander'
import { CliError, ExitCode, exitCodeForStatus, usageError } from './exit-codes.js'
import { note, outputOption } from './output.js'
import { packageVersion } from './version.js'

/**
 * The API-client half of `agentidp`: talks to a running server with the client credentials of an
 * agent, from flags or (better, for the secret) the environment. Management calls carry a Bearer
 * token obtained first with those credentials (client_secret_basic); the OAuth endpoints
 * (introspection, revocation) take the credentials themselves. The secret is never printed.
 * A server error becomes one line on stderr — the problem's title and detail, or the OAuth error
 * and its description — and the exit code of its status (cli/exit-codes.ts).
 */

export const DEFAULT_URL = 'http://localhost:3000'
const REQUEST_TIMEOUT_MS = 30_000

export interface ApiOptions { url: string, clientId?: string, clientSecret?: string, output?: string }

/** --url, --client-id, --client-secret (each with its variable) and --output on an API command. */
export function apiCommand (command: Command): Command {
  return command
    .addOption(new Option('--url <url>', 'the server\'s base URL').env('AGENTIDP_URL').default(DEFAULT_URL))
    .addOption(new Option('--client-id <id>', 'client id of the agent the command acts as').env('AGENTIDP_CLIENT_ID'))
    .addOption(new Option('--client-secret <secret>', 'its client secret (prefer the variable: arguments show in the process list)').env('AGENTIDP_CLIENT_SECRET'))
    .addOption(outputOption())
}

interface Problem { title?: string, detail?: string, code?: string, errors?: Array<{ field?: string, message?: string }>, error?: string, error_description?: string }

/** One line for a failed response: the problem's title and detail, or the OAuth error and its description. */
export function describeFailure (status: number, body: Problem | null): string {
  if (body !== null && typeof body.error === 'string') {
    return `${body.error}${body.error_description === undefined ? '' : `: ${body.error_description}`} (HTTP ${status})`
  }
  if (body !== null && (typeof body.title === 'string' || typeof body.detail === 'string')) {
    const fields = (body.errors ?? []).map((error) => `${error.field ?? ''} ${error.message ?? ''}`.trim()).filter(Boolean)
    const detail = body.detail === undefined || body.detail === body.title ? '' : `: ${body.detail}`
    return `${body.title ?? 'error'}${detail}${fields.length === 0 ? '' : ` [${fields.join('; ')}]`} (${body.code === undefined ? '' : `${body.code}, `}HTTP ${status})`
  }
  return `the server answered HTTP ${status}`
}

export class ApiClient {
  private bearer: string | undefined
  readonly base: URL
  private readonly clientId: string
  private readonly clientSecret: string

  constructor (options: ApiOptions) {
    let base: URL
    try {
      base = new URL(options.url)
    } catch {
      throw usageError(`--url / AGENTIDP_URL is not a URL: ${options.url}`)
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') throw usageError(`--url / AGENTIDP_URL must be http:// or https:// (got ${base.protocol})`)
    if (options.clientId === undefined || options.clientId === '' || options.clientSecret === undefined || options.clientSecret === '') {
      throw usageError('client credentials are required: set AGENTIDP_CLIENT_ID and AGENTIDP_CLIENT_SECRET (or --client-id and --client-secret)')
    }
    this.base = base
    this.clientId = options.clientId
    this.clientSecret = options.clientSecret
  }

  /** client_secret_basic: both parts form-urlencoded first (RFC 6749 §2.3.1). */
  private basic (): string {
    const encode = (value: string) => encodeURIComponent(value).replace(/%20/g, '+')
    return `Basic ${Buffer.from(`${encode(this.clientId)}:${encode(this.clientSecret)}`).toString('base64')}`
  }

  private url (path: string, query: Record<string, string | number | undefined> = {}): URL {
    const url = new URL(path.replace(/^\//, ''), this.base.href.endsWith('/') ? this.base.href : `${this.base.href}/`)
    for (const [name, value] of Object.entries(query)) if (value !== undefined) url.searchParams.set(name, String(value))
    return url
  }

  private async send (url: URL, init: RequestInit): Promise<Response> {
    try {
      const headers = { ...(init.headers as Record<string, string>), 'user-agent': `agentidp-cli/${packageVersion()}` }
      return await fetch(url, { ...init, headers, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS), redirect: 'error' })
    } catch (error) {
      const { cause } = error as { cause?: { code?: string, message?: string } }
      const reason = cause?.code ?? cause?.message ?? (error as Error).message
      throw new CliError(`cannot reach the server at ${this.base.origin} (${reason}); check --url / AGENTIDP_URL and that it is up`, ExitCode.FAILURE)
    }
  }

  private async parse<T> (response: Response): Promise<T> {
    const text = await response.text()
    let body: unknown = null
    if (text !== '') {
      try {
        body = JSON.parse(text)
      } catch {
        if (response.ok) throw new CliError(`the server answered HTTP ${response.status} with a body that is not JSON`)
      }
    }
    if (!response.ok) throw new CliError(describeFailure(response.status, body as Problem | null), exitCodeForStatus(response.status))
    return body as T
  }

  /** POST /api/v1/token (client_credentials) with this client's credentials. */
  async token (parameters: { scope?: string, resource?: string } = {}): Promise<Record<string, unknown> & { access_token: string }> {
    const form = new URLSearchParams({ grant_type: 'client_credentials' })
    if (parameters.scope !== undefined) form.set('scope', parameters.scope)
    if (parameters.resource !== undefined) form.set('resource', parameters.resource)
    const response = await this.send(this.url('/api/v1/token'), {
      method: 'POST',
      headers: { authorization: this.basic(), 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: form.toString()
    })
    return await this.parse(response)
  }

  /** An OAuth endpoint that takes the client's own credentials (introspection, revocation). */
  async oauth<T> (path: string, form: Record<string, string>): Promise<T> {
    const response = await this.send(this.url(path), {
      method: 'POST',
      headers: { authorization: this.basic(), 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: new URLSearchParams(form).toString()
    })
    return await this.parse(response)
  }

  /** A management API call with a Bearer token (obtained once per run). */
  async call<T> (method: string, path: string, options: { query?: Record<string, string | number | undefined>, body?: unknown } = {}): Promise<T> {
    this.bearer ??= (await this.token()).access_token
    const headers: Record<string, string> = { authorization: `Bearer ${this.bearer}`, accept: 'application/json' }
    if (options.body !== undefined) headers['content-type'] = 'application/json'
    const response = await this.send(this.url(path, options.query), {
      method,
      headers,
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) })
    })
    return await this.parse(response)
  }
}

/** The client for an API command's options; a secret given as an argument gets a warning. */
export function apiClient (command: Command): ApiClient {
  const options = command.opts<ApiOptions>()
  if (command.getOptionValueSource('clientSecret') === 'cli') {
    note('warning: --client-secret is visible in the process list; prefer AGENTIDP_CLIENT_SECRET')
  }
  return new ApiClient(options)
}
