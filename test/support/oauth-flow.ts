import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import type t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { agentBody, PLATFORM_SCOPES } from '../helper.js'
import { bootstrapAdmin } from '../../services/bootstrap.js'

/**
 * Real OAuth flows for the revocation, limits and security tests (not a test file: tap runs only
 * *.test.ts): secrets come from the bootstrap command and the credentials API, tokens from
 * POST /api/v1/token — nothing is minted behind the server's back.
 */

export type Tap = Parameters<Parameters<typeof t.test>[0]>[0]

export const TOKEN = '/api/v1/token'
export const INTROSPECT = '/api/v1/token/introspect'
export const REVOKE = '/api/v1/token/revoke'
export const AGENTS = '/api/v1/agents'

export interface Client { clientId: string, clientSecret: string, credentialId?: string }

/** The HTTP Basic value of RFC 6749 §2.3.1 (both parts form-urlencoded before base64). */
export function basic (clientId: string, secret: string): string {
  return 'Basic ' + Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')
}

export function bearer (token: string): { authorization: string } {
  return { authorization: `Bearer ${token}` }
}

/** Runs SQL against the schema the app uses (its DATABASE_URL carries the search_path). */
export async function withDb<T> (databaseUrl: string, work: (db: pg.Client) => Promise<T>): Promise<T> {
  const db = new pg.Client({ connectionString: databaseUrl })
  await db.connect()
  try {
    return await work(db)
  } finally {
    await db.end()
  }
}

/** The bootstrap admin (every platform scope, one credential), created as `bootstrap --email` does. */
export async function bootstrap (databaseUrl: string, email = `root-${Math.random().toString(36).slice(2)}@example.com`): Promise<Client> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1 })
  const admin = await bootstrapAdmin(pool, email, PLATFORM_SCOPES).finally(() => pool.end())
  return { clientId: admin.clientId, clientSecret: admin.clientSecret }
}

/** POST /api/v1/token with client_secret_basic and a form body. */
export async function requestToken (app: FastifyInstance, client: Client, form: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return await app.inject({
    method: 'POST',
    url: TOKEN,
    headers: { authorization: basic(client.clientId, client.clientSecret), 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ grant_type: 'client_credentials', ...form }).toString()
  })
}

/** An access token for `client`; fails loudly when the server refuses. */
export async function tokenFor (app: FastifyInstance, client: Client, form: Record<string, string> = {}): Promise<string> {
  const res = await requestToken(app, client, form)
  if (res.statusCode !== 200) throw new Error(`token request refused: ${res.statusCode} ${res.body}`)
  return (res.json() as { access_token: string }).access_token
}

/** Registers an agent through the API and gives it a credential; returns the client and its agent id. */
export async function registerClient (app: FastifyInstance, adminToken: string, overrides: Record<string, unknown> = {}): Promise<Client & { credentialId: string }> {
  const created = await app.inject({ method: 'POST', url: AGENTS, headers: bearer(adminToken), payload: agentBody(overrides) })
  if (created.statusCode !== 201) throw new Error(`agent creation refused: ${created.statusCode} ${created.body}`)
  const agentId = (created.json() as { agentId: string }).agentId
  return await addCredential(app, adminToken, agentId)
}

/** POST …/credentials: a new credential of `agentId` and its one-time secret. */
export async function addCredential (app: FastifyInstance, adminToken: string, agentId: string): Promise<Client & { credentialId: string }> {
  const res = await app.inject({ method: 'POST', url: `${AGENTS}/${agentId}/credentials`, headers: bearer(adminToken) })
  if (res.statusCode !== 201) throw new Error(`credential creation refused: ${res.statusCode} ${res.body}`)
  const body = res.json() as { credentialId: string, clientSecret: string }
  return { clientId: agentId, clientSecret: body.clientSecret, credentialId: body.credentialId }
}

/** Introspection on `app` by a caller holding tokens:read. */
export async function introspect (app: FastifyInstance, callerToken: string, token: string): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'POST', url: INTROSPECT, headers: bearer(callerToken), payload: { token } })
}

/**
 * Polls `probe` every 50 ms until it holds; returns when the probe that held began (ms after the
 * start), or null when one that began at or after `limitMs` still did not hold. Judging by when a
 * probe begins, not ends, keeps a slow probe on a busy machine (its requests take their time) from
 * failing a state that was reached in time.
 */
export async function within (probe: () => Promise<boolean>, limitMs = 1000, intervalMs = 50): Promise<number | null> {
  const started = Date.now()
  for (;;) {
    const began = Date.now() - started
    if (await probe()) return began
    if (began >= limitMs) return null
    await sleep(intervalMs)
  }
}

/** The third part of a JWT: the part an attacker would need to forge nothing. */
export function signatureOf (jwt: string): string {
  return jwt.split('.')[2] ?? ''
}
