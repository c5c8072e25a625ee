import { decodeJwt, decodeProtectedHeader, type JWTPayload, type ProtectedHeaderParameters } from 'jose'
import type { LightMyRequestResponse } from 'fastify'
import { agentBody, type TestApp } from '../../helper.js'
import { bootstrapAdmin } from '../../../services/bootstrap.js'
import type { Tap } from '../agents/support.js'

/**
 * Shared by the OAuth and credentials test files; not a test file itself (tap runs only *.test.ts).
 * Clients here are real: an agent registered through the API and a secret generated through the
 * credentials API (or the bootstrap command), so every token comes from the token endpoint.
 */

export const TOKEN = '/api/v1/token'
export const INTROSPECT = '/api/v1/token/introspect'
export const REVOKE = '/api/v1/token/revoke'
export const JWKS = '/.well-known/jwks.json'
export const METADATA = '/.well-known/oauth-authorization-server'

export const credentialsUrl = (agentId: string) => `/api/v1/agents/${agentId}/credentials`
export const credentialUrl = (agentId: string, credentialId: string) => `${credentialsUrl(agentId)}/${credentialId}`

/** A well-formed UUID v4 that names no credential. */
export const UNKNOWN_CREDENTIAL = '0d4f1c7e-3b6a-4e2f-9a8d-5c1b2e3f4a5b'

export interface Client { agentId: string, credentialId: string, secret: string }

/** RFC 6749 §2.3.1: client_id and secret are form-urlencoded, then joined by ':' and base64-encoded. */
export function basic (clientId: string, secret: string, encode: (value: string) => string = encodeURIComponent): string {
  return 'Basic ' + Buffer.from(`${encode(clientId)}:${encode(secret)}`).toString('base64')
}

export interface OAuthCall {
  /** form fields (sent form-encoded unless `json`); undefined values are left out */
  fields?: Record<string, string | undefined>
  /** a raw form body, for what an object can't say (a repeated parameter) */
  rawForm?: string
  json?: boolean
  headers?: Record<string, string>
  remoteAddress?: string
}

/** POSTs to an OAuth endpoint, form-encoded by default. */
export async function oauthPost (app: TestApp, url: string, call: OAuthCall = {}): Promise<LightMyRequestResponse> {
  const fields = Object.fromEntries(Object.entries(call.fields ?? {}).filter(([, value]) => value !== undefined)) as Record<string, string>
  const payload = call.rawForm ?? (call.json === true ? JSON.stringify(fields) : new URLSearchParams(fields).toString())
  return await app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': call.json === true ? 'application/json' : 'application/x-www-form-urlencoded', ...call.headers },
    payload,
    ...(call.remoteAddress === undefined ? {} : { remoteAddress: call.remoteAddress })
  })
}

export interface TokenCall extends OAuthCall {
  /** how the client authenticates: client_secret_basic (default), client_secret_post, or not at all */
  auth?: 'basic' | 'post' | 'none'
}

/** A client_credentials request for `client`; `fields` add to (or, with undefined, remove) parameters. */
export async function requestToken (app: TestApp, client: Pick<Client, 'agentId' | 'secret'>, call: TokenCall = {}): Promise<LightMyRequestResponse> {
  const auth = call.auth ?? 'basic'
  const fields: Record<string, string | undefined> = {
    grant_type: 'client_credentials',
    ...(auth === 'post' ? { client_id: client.agentId, client_secret: client.secret } : {}),
    ...call.fields
  }
  const headers = { ...(auth === 'basic' ? { authorization: basic(client.agentId, client.secret) } : {}), ...call.headers }
  return await oauthPost(app, TOKEN, { ...call, fields, headers })
}

/** A token from the token endpoint; fails loudly when the endpoint refuses. */
export async function accessToken (app: TestApp, client: Pick<Client, 'agentId' | 'secret'>, call: TokenCall = {}): Promise<string> {
  const res = await requestToken(app, client, call)
  if (res.statusCode !== 200) throw new Error(`token request failed: ${res.statusCode} ${res.body}`)
  return res.json().access_token as string
}

/** Registers an agent through the API (as `adminHeaders`) and generates one credential for it. */
export async function registerClient (app: TestApp, adminHeaders: Record<string, string>, overrides: Record<string, unknown> = {}): Promise<Client & { capabilities: string[] }> {
  const created = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: adminHeaders, payload: agentBody(overrides) })
  if (created.statusCode !== 201) throw new Error(`agent registration failed: ${created.statusCode} ${created.body}`)
  const agent = created.json()
  const credential = await app.inject({ method: 'POST', url: credentialsUrl(agent.agentId), headers: adminHeaders })
  if (credential.statusCode !== 201) throw new Error(`credential generation failed: ${credential.statusCode} ${credential.body}`)
  const { credentialId, clientSecret } = credential.json()
  return { agentId: agent.agentId, credentialId, secret: clientSecret, capabilities: agent.capabilities }
}

/** The bootstrap command's admin (every platform scope, one credential), with a Bearer header from the token endpoint. */
export async function bootstrapClient (app: TestApp, email = `root-${Date.now()}-${Math.random().toString(36).slice(2, 8)}@example.com`) {
  const result = await bootstrapAdmin(app.pg.pool, email, app.policy.platformScopes)
  const { rows } = await app.pg.query<{ credential_id: string }>('SELECT credential_id FROM credentials WHERE client_id = $1', [result.agentId])
  const client: Client = { agentId: result.agentId, credentialId: rows[0].credential_id, secret: result.clientSecret }
  const token = await accessToken(app, client)
  return { ...client, token, headers: { authorization: `Bearer ${token}` } }
}

export function decodeToken (token: string): { header: ProtectedHeaderParameters, payload: JWTPayload } {
  return { header: decodeProtectedHeader(token), payload: decodeJwt(token) }
}

/** Asserts an RFC 6749 §5.2 error body (never problem+json), with Cache-Control: no-store; returns the body. */
export function assertOAuthError (t: Tap, res: LightMyRequestResponse, status: number, error: string): Record<string, unknown> {
  t.equal(res.statusCode, status, `status ${status}: ${res.body.slice(0, 300)}`)
  t.match(res.headers['content-type'], /^application\/json/, 'a JSON body, not problem+json')
  const body = res.json() as Record<string, unknown>
  t.same(Object.keys(body).sort(), ['error', 'error_description'], 'exactly {error, error_description}')
  t.equal(body.error, error)
  t.type(body.error_description, 'string')
  t.equal(res.headers['cache-control'], 'no-store', 'Cache-Control: no-store')
  return body
}

/** Introspects `token` as `caller` (Bearer headers or a client) and returns the parsed answer. */
export async function introspect (app: TestApp, token: string, caller: { headers: Record<string, string> } | Pick<Client, 'agentId' | 'secret'>): Promise<Record<string, unknown>> {
  const headers = 'headers' in caller ? caller.headers : { authorization: basic(caller.agentId, caller.secret) }
  const res = await oauthPost(app, INTROSPECT, { fields: { token }, headers })
  if (res.statusCode !== 200) throw new Error(`introspection failed: ${res.statusCode} ${res.body}`)
  return res.json()
}

export interface AuditRow {
  event_id: string
  agent_id: string | null
  action: string
  outcome: string
  ip_address: string | null
  metadata: Record<string, unknown>
}

/** Audit rows with the given action, optionally only those whose metadata has `key` = `value`. */
export async function auditRows (app: TestApp, action: string, where: { agentId?: string, metadataKey?: string, metadataValue?: string } = {}): Promise<AuditRow[]> {
  const { rows } = await app.pg.query<AuditRow>(
    `SELECT event_id, agent_id, action, outcome, host(ip_address) AS ip_address, metadata FROM audit_events
     WHERE action = $1 AND ($2::uuid IS NULL OR agent_id = $2::uuid) AND ($3::text IS NULL OR metadata->>$3 = $4)
     ORDER BY created_at, event_id`,
    [action, where.agentId ?? null, where.metadataKey ?? null, where.metadataValue ?? null])
  return rows
}

/** Every audit row, as text, to search for things that must never be there. */
export async function allAuditText (app: TestApp): Promise<string> {
  const { rows } = await app.pg.query('SELECT to_jsonb(e)::text AS row FROM audit_events e')
  return rows.map((row: { row: string }) => row.row).join('\n')
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
