import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto'
import dotenv from 'dotenv'
import fp from 'fastify-plugin'
import { Type, type Static } from 'typebox'
import { Value } from 'typebox/value'
import { ConfigError, type ConfigProblem } from '../lib/errors.js'
import { bundledPolicyDir } from '../lib/paths.js'
import { algorithmOfKey, DEFAULT_SIGNING_ALG, describeKeyType, KEY_REQUIRED_BY, SIGNING_ALGORITHMS, type SigningAlg } from '../lib/signing-keys.js'

/**
 * Every environment variable the IdP reads, in one schema. This module is the only reader of
 * process.env (server.ts hands it the environment); everything else receives a typed Config.
 */
const Flag = (fallback: boolean, description: string) => Type.Boolean({ default: fallback, description })
const Limit = (fallback: number, description: string) =>
  Type.Integer({ minimum: 0, maximum: 1_000_000_000, default: fallback, description: `${description} (0 turns it off)` })
const Text = (description: string) => Type.String({ minLength: 1, maxLength: 4096, description })

const EnvSchema = Type.Object({
  NODE_ENV: Type.String({ default: 'production', maxLength: 32 }),
  LOG_LEVEL: Type.Optional(Type.Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])),
  LOG_FORMAT: Type.Enum(['json', 'gcp', 'pretty'], { default: 'json', description: 'json lines; gcp: Cloud Logging fields (severity, message); pretty: dev mode only' }),
  HOST: Type.String({ default: '0.0.0.0', minLength: 1, maxLength: 255 }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000 }),
  DATABASE_URL: Type.String({ pattern: '^postgres(ql)?://', maxLength: 4096, description: 'postgresql://user:password@host:port/database' }),
  REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://', maxLength: 4096 })),
  JWT_ALG: Type.Enum([...SIGNING_ALGORITHMS], { default: DEFAULT_SIGNING_ALG, description: 'the algorithm access tokens are signed with; JWT_PRIVATE_KEY must be its key type: RS256 an RSA key of at least 2048 bits, ES256 an EC P-256 key, EdDSA an Ed25519 key' }),
  JWT_PRIVATE_KEY: Text('PEM private key (PKCS#8; RSA also PKCS#1, EC also SEC1) that signs access tokens, of the type JWT_ALG needs'),
  JWT_PUBLIC_KEY: Text('PEM public key matching JWT_PRIVATE_KEY'),
  JWT_ADDITIONAL_PUBLIC_KEYS: Type.Optional(Type.String({ maxLength: 65536, description: 'more PEM public keys that verify and are published (key rotation, a change of JWT_ALG): RSA ≥ 2048 bits, EC P-256 or Ed25519, each verifying only its own algorithm' })),
  ISSUER_URL: Type.String({ pattern: '^https?://[^\\s?#]+$', maxLength: 2048 }),
  CORS_ORIGIN: Type.String({ default: '*', minLength: 1, maxLength: 4096 }),
  VAULT_ADDR: Type.Optional(Type.String({ pattern: '^https?://', maxLength: 2048 })),
  VAULT_TOKEN: Type.Optional(Text('Vault token, required with VAULT_ADDR')),
  VAULT_MOUNT: Type.String({ default: 'secret', pattern: '^[A-Za-z0-9_\\-/]+$', maxLength: 255 }),
  VAULT_CACERT: Type.Optional(Text('PEM file of the CA that signed the Vault server certificate (https VAULT_ADDR)')),
  VAULT_TLS_SERVER_NAME: Type.Optional(Type.String({ minLength: 1, maxLength: 255, pattern: '^[A-Za-z0-9.-]+$', description: 'the name the Vault certificate must carry, when it differs from VAULT_ADDR\'s host' })),
  VAULT_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 30_000, default: 2000, description: 'bound on every Vault call' }),
  VAULT_RECONCILE_INTERVAL_SECONDS: Type.Integer({ minimum: 1, maximum: 86_400, default: 900, description: 'how often Vault secrets without a usable credential row are removed' }),
  POLICY_DIR: Type.String({ default: bundledPolicyDir, minLength: 1, maxLength: 4096, description: 'the authorization policy; default: the policies/ bundled with the code' }),
  TOKEN_TTL_SECONDS: Type.Integer({ minimum: 60, maximum: 86_400, default: 3600 }),
  REMOTE_FETCH_ALLOW_PRIVATE_NETWORKS: Flag(false, 'let jwks_uri, OIDC discovery and client metadata document fetches reach loopback, private and link-local addresses (an issuer inside the cluster); off: only public addresses'),
  REMOTE_FETCH_CA_FILE: Type.Optional(Text('PEM file of extra CAs trusted for jwks_uri, OIDC discovery and client metadata document fetches (e.g. a Kubernetes cluster CA), besides the system roots')),
  DPOP_NONCE_REQUIRED: Flag(false, 'RFC 9449 §8: every DPoP proof at the token endpoint must carry a server nonce (DPoP-Nonce); off: nonces are not asked for'),
  DELEGATION_MAX_DEPTH: Type.Integer({ minimum: 1, maximum: 16, default: 4, description: 'most hops (actors) a token-exchange chain may have' }),
  RATE_LIMIT_TOKEN_PER_CLIENT: Limit(100, 'token requests per minute per client_id'),
  RATE_LIMIT_AUTH_FAILURES_PER_IP: Limit(30, 'failed client authentications per minute per IP'),
  RATE_LIMIT_BEARER_FAILURES_PER_IP: Limit(100, 'failed Bearer authentications (no, malformed or invalid access token) per minute per IP'),
  TOKEN_MONTHLY_QUOTA: Limit(10_000, 'tokens per agent per UTC month'),
  MAX_AGENTS_PER_OWNER: Limit(100, 'agents per owner label'),
  AUDIT_RETENTION_DAYS: Limit(90, 'days audit events are kept'),
  AUDIT_SEAL_INTERVAL_MS: Type.Integer({ minimum: 50, maximum: 60_000, default: 1000, description: 'how often committed audit events are sealed into the hash chain' }),
  AUDIT_RETENTION_INTERVAL_SECONDS: Type.Integer({ minimum: 1, maximum: 86_400, default: 900, description: 'how often expired audit events are pruned' }),
  TOKEN_PRUNE_INTERVAL_SECONDS: Type.Integer({ minimum: 1, maximum: 86_400, default: 600, description: 'how often revocations of expired tokens are pruned' }),
  TRUST_PROXY: Type.String({ default: '', maxLength: 4096, description: 'comma-separated addresses/CIDRs whose X-Forwarded-For is believed' }),
  REQUEST_TIMEOUT_MS: Type.Integer({ minimum: 1000, maximum: 300_000, default: 30_000, description: 'time a client has to send a whole request (headers and body) before it is answered 408 and closed' }),
  SHUTDOWN_GRACE_MS: Type.Integer({ minimum: 1000, maximum: 120_000, default: 10_000, description: 'on SIGTERM/SIGINT: time for requests in progress to finish before the process exits' }),
  MAX_EVENT_LOOP_DELAY_MS: Limit(1000, 'event-loop lag in milliseconds beyond which requests are shed with 503'),
  METRICS_ENABLED: Flag(true, 'serve GET /metrics'),
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 32, maxLength: 4096, pattern: '^[A-Za-z0-9._~+/=-]+$', description: 'when set, GET /metrics requires Authorization: Bearer <METRICS_TOKEN>' })),
  DOCS_ENABLED: Flag(true, 'serve /docs and /docs/json')
})
type Env = Static<typeof EnvSchema>

export interface Config extends Omit<Env, 'JWT_ADDITIONAL_PUBLIC_KEYS' | 'TRUST_PROXY' | 'LOG_LEVEL'> {
  LOG_LEVEL: NonNullable<Env['LOG_LEVEL']>
  /** extra verification keys (previous or next signing key), already split into single PEMs */
  JWT_ADDITIONAL_PUBLIC_KEYS: string[]
  TRUST_PROXY: string[]
  /** prefix of every cache key; tests give each file its own */
  CACHE_PREFIX: string
  /** true only for `npm run dev`: allows the in-process cache when REDIS_URL is unset */
  EMBEDDED: boolean
}

export interface LoadOptions {
  /** dev mode: REDIS_URL may be unset (in-process cache), LOG_FORMAT may be pretty */
  embedded?: boolean
  cachePrefix?: string
}

/** Validates the environment and returns the typed configuration, or throws ConfigError. */
export function loadConfig (env: Record<string, string | undefined>, options: LoadOptions = {}): Config {
  const raw: Record<string, unknown> = {}
  for (const key of Object.keys(EnvSchema.properties)) {
    const value = env[key]
    // an empty variable means "not set": docker/compose pass unset .env entries as ''
    if (value !== undefined && value !== '') raw[key] = value
  }
  const candidate = Value.Default(EnvSchema, Value.Convert(EnvSchema, raw)) as Record<string, unknown>
  // every problem in one report: an operator fixes them all in one round, not one per restart
  const problems: ConfigProblem[] = []
  const add = (problem: ConfigProblem) => { if (!problems.some((known) => known.variable === problem.variable)) problems.push(problem) }
  for (const error of Value.Errors(EnvSchema, candidate)) describe(error, candidate).forEach(add)
  const invalid = (variable: string) => problems.some((known) => known.variable === variable)
  const collect = (check: () => void) => {
    try {
      check()
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error
      error.problems.forEach(add)
    }
  }

  const parsed = candidate as Env
  const privatePem = normalisePem(parsed.JWT_PRIVATE_KEY ?? '')
  const publicPem = normalisePem(parsed.JWT_PUBLIC_KEY ?? '')
  // with a malformed JWT_ALG (already reported) the key is only checked to be of a usable type
  const alg = invalid('JWT_ALG') ? null : parsed.JWT_ALG
  if (!invalid('JWT_PRIVATE_KEY') && !invalid('JWT_PUBLIC_KEY')) collect(() => { checkKeyPair(privatePem, publicPem, alg) })
  const additional = splitPems(normalisePem(parsed.JWT_ADDITIONAL_PUBLIC_KEYS ?? ''))
  collect(() => { additional.forEach((pem) => parsePublicKey('JWT_ADDITIONAL_PUBLIC_KEYS', pem)) })

  if (parsed.REDIS_URL === undefined && options.embedded !== true && !invalid('REDIS_URL')) {
    add({ variable: 'REDIS_URL', problem: 'is required (the in-process cache exists only in dev mode)' })
  }
  // pino-pretty is a dev dependency: the production image does not have it
  if (parsed.LOG_FORMAT === 'pretty' && options.embedded !== true) {
    throw new ConfigError('LOG_FORMAT', 'pretty exists only in dev mode (npm run dev); use json or gcp')
  }
  if (parsed.VAULT_ADDR !== undefined && parsed.VAULT_TOKEN === undefined) {
    add({ variable: 'VAULT_TOKEN', problem: 'is required when VAULT_ADDR is set' })
  }
  if (problems.length > 0) throw ConfigError.of(problems)

  return {
    ...parsed,
    LOG_LEVEL: parsed.LOG_LEVEL ?? (parsed.NODE_ENV === 'test' ? 'silent' : 'info'),
    JWT_PRIVATE_KEY: privatePem,
    JWT_PUBLIC_KEY: publicPem,
    JWT_ADDITIONAL_PUBLIC_KEYS: additional,
    TRUST_PROXY: parsed.TRUST_PROXY.split(',').map((entry) => entry.trim()).filter((entry) => entry !== ''),
    CACHE_PREFIX: options.cachePrefix ?? 'agentidp:',
    EMBEDDED: options.embedded === true
  }
}

/** process.env, after a `.env` file in the working directory (if any) filled what is unset. */
export function readEnvironment (): Record<string, string | undefined> {
  dotenv.config({ quiet: true })
  return { ...process.env }
}

/** Only DATABASE_URL, for commands that need nothing else (bootstrap). */
export function loadDatabaseUrl (env: Record<string, string | undefined>): string {
  const value = env.DATABASE_URL
  if (value === undefined || value === '') throw new ConfigError('DATABASE_URL', 'is required')
  if (!Value.Check(EnvSchema.properties.DATABASE_URL, value)) throw new ConfigError('DATABASE_URL', 'is malformed: must be a postgres:// or postgresql:// URL')
  return value
}

/** A schema error as problems: one per variable (a `required` error names every missing one). */
function describe (error: { instancePath: string, keyword: string, message: string, params: unknown }, candidate: Record<string, unknown>): ConfigProblem[] {
  if (error.keyword === 'required') {
    const missing = (error.params as { requiredProperties?: string[] }).requiredProperties ?? ['environment']
    return missing.map((variable) => ({ variable, problem: 'is required' }))
  }
  const variable = error.instancePath.replace(/^\//, '')
  if (candidate[variable] === undefined) return [{ variable, problem: 'is required' }]
  // never echo the value: it may be a secret (a key, a token, a URL with a password)
  return [{ variable, problem: `is malformed: ${error.message}` }]
}

/** Orchestrators often deliver PEMs on one line with literal "\n" sequences. */
function normalisePem (value: string): string {
  return value.replace(/\\n/g, '\n').replace(/\r\n/g, '\n').trim()
}

function splitPems (value: string): string[] {
  return value.match(/-----BEGIN [A-Z ]+-----[\s\S]+?-----END [A-Z ]+-----/g) ?? []
}

function parsePublicKey (variable: string, pem: string): KeyObject {
  let key: KeyObject
  try {
    key = createPublicKey(pem)
  } catch {
    throw new ConfigError(variable, 'is not a PEM public key')
  }
  // an additional key may be of any signing type: during a change of JWT_ALG the old one keeps verifying
  if (algorithmOfKey(key) === null) throw new ConfigError(variable, `holds ${describeKeyType(key)}; keys must be ${Object.values(KEY_REQUIRED_BY).join(', ')}`)
  return key
}

/** The private key must be of the type JWT_ALG needs (any signing type while JWT_ALG is malformed). */
function checkSigningKeyType (privateKey: KeyObject, alg: SigningAlg | null): void {
  const implied = algorithmOfKey(privateKey)
  if (alg === null) {
    if (implied === null) throw new ConfigError('JWT_PRIVATE_KEY', `is ${describeKeyType(privateKey)}; it must be ${Object.values(KEY_REQUIRED_BY).join(', ')}`)
    return
  }
  if (implied !== alg) {
    throw new ConfigError('JWT_PRIVATE_KEY', `is ${describeKeyType(privateKey)}, but JWT_ALG ${alg} needs ${KEY_REQUIRED_BY[alg]} (agentidp keys generate --alg ${alg})`)
  }
}

function checkKeyPair (privatePem: string, publicPem: string, alg: SigningAlg | null): void {
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey(privatePem)
  } catch {
    throw new ConfigError('JWT_PRIVATE_KEY', 'is not a PEM private key')
  }
  checkSigningKeyType(privateKey, alg)
  const publicKey = parsePublicKey('JWT_PUBLIC_KEY', publicPem)
  const derived = createPublicKey(privateKey).export({ type: 'spki', format: 'der' })
  if (!derived.equals(publicKey.export({ type: 'spki', format: 'der' }))) {
    throw new ConfigError('JWT_PUBLIC_KEY', 'does not match JWT_PRIVATE_KEY')
  }
}

declare module 'fastify' {
  interface FastifyInstance { config: Config }
}

/** Exposes the already-validated configuration; validation happens before the app is built. */
export default fp(async function configPlugin (app, options: { config: Config }) {
  app.decorate('config', options.config)
}, { name: 'config', fastify: '5.x' })
