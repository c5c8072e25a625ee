import { createHash, generateKeyPairSync, randomUUID } from 'node:crypto'
import { Writable } from 'node:stream'
import pg from 'pg'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../app.js'
import { loadConfig, type Config } from '../plugins/config.js'
import { migrate } from '../repositories/migrations.js'
import { bundledPolicyDir } from '../lib/paths.js'
import { insertAgent } from '../repositories/agents.js'
import { insertCredential } from '../repositories/credentials.js'
import { insertDelegation } from '../repositories/delegations.js'
import { newTokenId } from '../lib/token-id.js'
import { loadPolicyData } from '../services/policy.js'
import { startVaultStandIn, type VaultStandIn } from './support/vault-server.js'

/**
 * Test harness: every test file gets its own PostgreSQL schema and its own Redis key prefix, so
 * files run in parallel against the machine's real PostgreSQL and Redis without seeing each other.
 */
export const BASE_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test'
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'
export const ISSUER = 'http://idp.test'
/** RFC 9728: the protected resource metadata every 401 of the management API names (`resource_metadata`) */
export const RESOURCE_METADATA = `${ISSUER}/.well-known/oauth-protected-resource`

interface Tap { teardown (fn: () => unknown): void }

function pemPair () {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  return {
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString()
  }
}

export const testKeys = pemPair()

/** The platform scopes of the bundled policy data (the only place they are defined). */
export const PLATFORM_SCOPES: readonly string[] = (await loadPolicyData(bundledPolicyDir)).platformScopes

export function schemaUrl (schema: string, base = BASE_DATABASE_URL): string {
  const url = new URL(base)
  url.searchParams.set('options', `-c search_path=${schema}`)
  return url.toString()
}

/** A fresh, migrated schema, dropped when the test ends. */
export async function createSchema (t: Tap): Promise<{ schema: string, databaseUrl: string }> {
  const schema = `t_${randomUUID().replace(/-/g, '').slice(0, 16)}`
  await migrate(BASE_DATABASE_URL, { schema })
  t.teardown(async () => {
    const client = new pg.Client({ connectionString: BASE_DATABASE_URL })
    await client.connect()
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await client.end()
  })
  return { schema, databaseUrl: schemaUrl(schema) }
}

/**
 * TEST_VAULT=1 (npm run test:vault): every app a test builds keeps its client secrets in Vault —
 * a KV v2 stand-in (test/support/vault-server.ts), one per test process, shared by its apps as one
 * Vault is by a deployment's instances. Tests that set VAULT_* themselves keep their own.
 */
export const sharedVault: VaultStandIn | null = process.env.TEST_VAULT === '1' ? await startVaultStandIn() : null

export function testEnv (databaseUrl: string, overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    ...(sharedVault === null ? {} : { VAULT_ADDR: sharedVault.address, VAULT_TOKEN: sharedVault.token }),
    NODE_ENV: 'test',
    DATABASE_URL: databaseUrl,
    REDIS_URL,
    JWT_PRIVATE_KEY: testKeys.privateKey,
    JWT_PUBLIC_KEY: testKeys.publicKey,
    ISSUER_URL: ISSUER,
    POLICY_DIR: bundledPolicyDir,
    // a busy CI machine lags: load shedding is tested on its own (test/plugins/load-shedding.test.ts)
    MAX_EVENT_LOOP_DELAY_MS: '0',
    ...overrides
  }
}

/**
 * The configuration of a test app. Apps on the same database share their Redis key prefix, as the
 * instances of one deployment do (rate-limit windows, change broadcasts); apps on different ones
 * never see each other's keys.
 */
export function testConfig (databaseUrl: string, overrides: Record<string, string | undefined> = {}): Config {
  const prefix = createHash('sha256').update(databaseUrl).digest('hex').slice(0, 16)
  return loadConfig(testEnv(databaseUrl, overrides), { cachePrefix: `test:${prefix}:` })
}

/** Collects every log line an app writes, to search them for secrets. */
export class LogCapture extends Writable {
  readonly lines: string[] = []
  override _write (chunk: Buffer, _encoding: string, done: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean))
    done()
  }

  get text (): string { return this.lines.join('\n') }
}

export interface TestApp extends FastifyInstance {
  schema: string
  databaseUrl: string
}

/** Builds the app on its own schema; closed and dropped in teardown. */
export async function build (t: Tap, options: { env?: Record<string, string | undefined>, logStream?: NodeJS.WritableStream, databaseUrl?: string } = {}): Promise<TestApp> {
  const { schema, databaseUrl } = options.databaseUrl === undefined
    ? await createSchema(t)
    : { schema: new URL(options.databaseUrl).searchParams.get('options')?.split('=')[1] ?? 'public', databaseUrl: options.databaseUrl }
  const config = testConfig(databaseUrl, { ...options.env, ...(options.logStream === undefined ? {} : { LOG_LEVEL: 'info' }) })
  const app = await buildApp({ config, logStream: options.logStream })
  t.teardown(() => app.close())
  await app.ready()
  return Object.assign(app, { schema, databaseUrl })
}

let counter = 0
/** A valid agent body with a unique email. */
export function agentBody (overrides: Record<string, unknown> = {}): Record<string, unknown> {
  counter += 1
  return {
    email: `agent-${counter}-${randomUUID().slice(0, 8)}@example.com`,
    agentType: 'summarizer',
    version: '1.0.0',
    capabilities: ['docs:read'],
    owner: 'team-a',
    deploymentEnv: 'staging',
    ...overrides
  }
}

/** A credential row for `agentId` whose secret nobody knows: enough to hang minted tokens on. */
export async function seedCredential (app: FastifyInstance, agentId: string): Promise<string> {
  const credentialId = randomUUID()
  await insertCredential(app.pg, { credentialId, clientId: agentId, secretHash: 'not-a-hash', expiresAt: null })
  return credentialId
}

/** A jti as the token endpoint makes it: naming a (fresh) credential of the agent. */
export async function tokenIdFor (app: FastifyInstance, agentId: string, credentialId?: string): Promise<string> {
  return newTokenId(credentialId ?? await seedCredential(app, agentId))
}

/**
 * Signs an access token for `agentId` with the app's own key ring, as the token endpoint would:
 * its jti names a credential of the agent (a fresh one unless `credentialId` is given).
 */
export async function mintToken (app: FastifyInstance, agentId: string, claims: Record<string, unknown> = {},
  options: { credentialId?: string } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return await app.keys.sign({
    iss: ISSUER,
    sub: agentId,
    client_id: agentId,
    aud: ISSUER,
    iat: now,
    exp: now + 3600,
    jti: typeof claims.jti === 'string' ? claims.jti : await tokenIdFor(app, agentId, options.credentialId),
    scope: PLATFORM_SCOPES.join(' '),
    ...claims
  })
}

/**
 * A delegated (token-exchange) token of `actorId` acting for `subjectId`, valid as the token
 * endpoint would have made it: the actor is put in the subject's `mayAct` and the chain row the
 * exchange writes is written (routes/oauth/token-exchange.ts makes real ones).
 */
export async function mintDelegatedToken (app: FastifyInstance, subjectId: string, actorId: string, claims: Record<string, unknown> = {}): Promise<string> {
  const [subjectCredential, actorCredential] = [await seedCredential(app, subjectId), await seedCredential(app, actorId)]
  const now = Math.floor(Date.now() / 1000)
  const jti = newTokenId(actorCredential)
  await app.pg.query('UPDATE agents SET may_act = array_append(may_act, $2::uuid) WHERE agent_id = $1', [subjectId, actorId])
  await insertDelegation(app.pg, jti, {
    agents: [subjectId, actorId], credentials: [subjectCredential, actorCredential], iats: [now, now], ancestorJtis: [newTokenId(subjectCredential)]
  }, now + 3600)
  return await mintToken(app, subjectId, { client_id: actorId, act: { sub: actorId }, jti, ...claims })
}

/** Registers an agent directly in the database (no API call) and returns it with a token. */
export async function seedAgent (app: FastifyInstance, overrides: Record<string, unknown> = {}, scope?: string) {
  const agent = await insertAgent(app.pg, agentBody(overrides) as never)
  const token = await mintToken(app, agent.agentId, { scope: scope ?? agent.capabilities.join(' ') })
  return { agent, token, headers: { authorization: `Bearer ${token}` } }
}

/** An active agent holding every platform scope, and a bearer header for it. */
export async function seedAdmin (app: FastifyInstance) {
  return await seedAgent(app, { capabilities: [...PLATFORM_SCOPES], owner: 'platform' })
}
