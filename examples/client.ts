/**
 * A small AgentIdP client, typed by the OpenAPI document: `generated/agentidp.ts` is what
 * openapi-typescript makes of /docs/json (`npm run examples:types` against a running server;
 * git-ignored). It compiles only while the schema names it uses stay what they are.
 *
 * Run it (Node 24 runs TypeScript as is) with an admin's client credentials, e.g. the bootstrap
 * admin `npm run dev` prints:
 *
 *   AGENTIDP_URL=http://localhost:3000 CLIENT_ID=… CLIENT_SECRET=… node examples/client.ts
 *
 * It registers an agent, mints it a credential, gets a token with that credential and introspects
 * the token as the admin, printing one JSON line per step.
 */
import type { components } from './generated/agentidp.ts'

type Schemas = components['schemas']
type Agent = Schemas['Agent']
type CreateAgent = Schemas['CreateAgent']
type IssuedCredential = Schemas['IssuedCredential']
type TokenResponse = Schemas['TokenResponse']
type IntrospectionResponse = Schemas['IntrospectionResponse']
type Problem = Schemas['Problem']
type OAuthError = Schemas['OAuthError']

export class ApiError extends Error {
  readonly status: number
  readonly body: Problem | OAuthError | string
  constructor (status: number, body: Problem | OAuthError | string) {
    super(`HTTP ${status}: ${typeof body === 'string' ? body : 'code' in body ? `${body.code} ${body.detail}` : `${body.error} ${body.error_description}`}`)
    this.name = 'ApiError'
    this.status = status
    this.body = body
  }
}

export class AgentIdpClient {
  private readonly baseUrl: string
  constructor (baseUrl: string) {
    this.baseUrl = baseUrl
  }

  private async call<T> (method: string, path: string, init: { headers?: Record<string, string>, body?: string } = {}): Promise<T> {
    const response = await fetch(new URL(path, this.baseUrl), { method, headers: init.headers, body: init.body })
    const text = await response.text()
    // problem+json and application/json alike are JSON
    const body: unknown = text === '' ? null : /json/.test(response.headers.get('content-type') ?? '') ? JSON.parse(text) : text
    if (!response.ok) throw new ApiError(response.status, body as Problem | OAuthError | string)
    return body as T
  }

  /** POST /api/v1/token: client_credentials with HTTP Basic (client_secret_basic) */
  async token (clientId: string, clientSecret: string, scope?: string): Promise<TokenResponse> {
    const form = new URLSearchParams({ grant_type: 'client_credentials', ...(scope === undefined ? {} : { scope }) })
    const basic = Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')
    return await this.call<TokenResponse>('POST', '/api/v1/token', {
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: form.toString()
    })
  }

  async registerAgent (accessToken: string, agent: CreateAgent): Promise<Agent> {
    return await this.call<Agent>('POST', '/api/v1/agents', {
      headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
      body: JSON.stringify(agent)
    })
  }

  /** POST /api/v1/agents/{agentId}/credentials: no body needed */
  async generateCredential (accessToken: string, agentId: Agent['agentId']): Promise<IssuedCredential> {
    return await this.call<IssuedCredential>('POST', `/api/v1/agents/${encodeURIComponent(agentId)}/credentials`, {
      headers: { authorization: `Bearer ${accessToken}` }
    })
  }

  async introspect (accessToken: string, token: string): Promise<IntrospectionResponse> {
    return await this.call<IntrospectionResponse>('POST', '/api/v1/token/introspect', {
      headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ token })
    })
  }
}

/** The walk-through: every step's answer, one JSON line each. */
export async function walkThrough (baseUrl: string, adminId: string, adminSecret: string): Promise<IntrospectionResponse> {
  const client = new AgentIdpClient(baseUrl)
  const admin = await client.token(adminId, adminSecret)
  const agent = await client.registerAgent(admin.access_token, {
    email: `example-${Date.now()}@example.com`,
    agentType: 'summarizer',
    version: '1.0.0',
    capabilities: ['docs:read'],
    owner: 'examples',
    deploymentEnv: 'development'
  })
  console.log(JSON.stringify({ step: 'registered', agentId: agent.agentId, status: agent.status }))
  const credential = await client.generateCredential(admin.access_token, agent.agentId)
  console.log(JSON.stringify({ step: 'credential', credentialId: credential.credentialId, clientId: credential.clientId }))
  const token = await client.token(credential.clientId, credential.clientSecret, 'docs:read')
  console.log(JSON.stringify({ step: 'token', scope: token.scope, expiresIn: token.expires_in }))
  const introspection = await client.introspect(admin.access_token, token.access_token)
  console.log(JSON.stringify({ step: 'introspected', active: introspection.active, sub: introspection.sub, scope: introspection.scope }))
  return introspection
}

if (import.meta.main) {
  const { AGENTIDP_URL = 'http://localhost:3000', CLIENT_ID, CLIENT_SECRET } = process.env
  if (CLIENT_ID === undefined || CLIENT_SECRET === undefined) {
    console.error('set CLIENT_ID and CLIENT_SECRET (an agent holding agents:write, credentials:write and tokens:read)')
    process.exit(2)
  }
  walkThrough(AGENTIDP_URL, CLIENT_ID, CLIENT_SECRET).then(
    (result) => { process.exit(result.active ? 0 : 1) },
    (error: unknown) => { console.error(error instanceof Error ? error.message : error); process.exit(1) })
}
