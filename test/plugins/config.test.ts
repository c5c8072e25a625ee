import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import t, { type Test } from 'tap'
import { loadConfig } from '../../plugins/config.js'
import { ConfigError } from '../../lib/errors.js'
import { testEnv, testKeys } from '../helper.js'

const env = (overrides: Record<string, string | undefined> = {}) => testEnv('postgres://u:p@127.0.0.1:5432/db', overrides)

function configError (t: Test, overrides: Record<string, string | undefined>, variable: string, options = {}): ConfigError {
  try {
    loadConfig(env(overrides), options)
  } catch (error) {
    t.ok(error instanceof ConfigError, 'a ConfigError')
    t.equal((error as ConfigError).variable, variable)
    t.match((error as Error).message, variable)
    t.notMatch((error as Error).message, /\n/, 'one line')
    return error as ConfigError
  }
  t.fail(`accepted ${JSON.stringify(Object.keys(overrides))}`)
  throw new Error('unreachable')
}

t.test('every required variable, when missing, is named', async (t) => {
  for (const variable of ['DATABASE_URL', 'JWT_PRIVATE_KEY', 'JWT_PUBLIC_KEY', 'ISSUER_URL', 'REDIS_URL']) {
    configError(t, { [variable]: undefined }, variable)
    configError(t, { [variable]: '' }, variable)
  }
})

t.test('REDIS_URL may be missing only in dev mode (embedded)', async (t) => {
  t.equal(loadConfig(env({ REDIS_URL: undefined }), { embedded: true }).REDIS_URL, undefined)
})

t.test('malformed values are named and never echoed', async (t) => {
  const error = configError(t, { DATABASE_URL: 'mysql://root:hunter2@db/x' }, 'DATABASE_URL')
  t.notMatch(error.message, /hunter2/)
  configError(t, { PORT: 'eighty' }, 'PORT')
  configError(t, { TOKEN_TTL_SECONDS: '10' }, 'TOKEN_TTL_SECONDS')
  configError(t, { RATE_LIMIT_TOKEN_PER_CLIENT: '-1' }, 'RATE_LIMIT_TOKEN_PER_CLIENT')
  configError(t, { ISSUER_URL: 'idp.example.com' }, 'ISSUER_URL')
  configError(t, { METRICS_ENABLED: 'maybe' }, 'METRICS_ENABLED')
})

t.test('a private key that is not a PEM, too small or not RSA is refused', async (t) => {
  const secretish = 'not-a-key-but-maybe-a-secret'
  const error = configError(t, { JWT_PRIVATE_KEY: secretish }, 'JWT_PRIVATE_KEY')
  t.notMatch(error.message, secretish)
  const small = generateKeyPairSync('rsa', { modulusLength: 1024 })
  configError(t, {
    JWT_PRIVATE_KEY: small.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    JWT_PUBLIC_KEY: small.publicKey.export({ type: 'spki', format: 'pem' }).toString()
  }, 'JWT_PRIVATE_KEY')
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  configError(t, { JWT_PRIVATE_KEY: ec.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }, 'JWT_PRIVATE_KEY')
})

const pems = (pair: { privateKey: KeyObject, publicKey: KeyObject }) => ({
  JWT_PRIVATE_KEY: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  JWT_PUBLIC_KEY: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString()
})

t.test('JWT_ALG is RS256 unless set; ES256 takes an EC P-256 key, EdDSA an Ed25519 key', async (t) => {
  t.equal(loadConfig(env()).JWT_ALG, 'RS256')
  t.equal(loadConfig(env({ JWT_ALG: 'ES256', ...pems(generateKeyPairSync('ec', { namedCurve: 'P-256' })) })).JWT_ALG, 'ES256')
  t.equal(loadConfig(env({ JWT_ALG: 'EdDSA', ...pems(generateKeyPairSync('ed25519')) })).JWT_ALG, 'EdDSA')
  const sec1 = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  t.equal(loadConfig(env({
    JWT_ALG: 'ES256',
    JWT_PRIVATE_KEY: sec1.privateKey.export({ type: 'sec1', format: 'pem' }).toString(),
    JWT_PUBLIC_KEY: sec1.publicKey.export({ type: 'spki', format: 'pem' }).toString()
  })).JWT_ALG, 'ES256', 'a SEC1 EC private key too')
  configError(t, { JWT_ALG: 'HS256' }, 'JWT_ALG')
  configError(t, { JWT_ALG: 'es256' }, 'JWT_ALG')
})

t.test('a private key that does not fit JWT_ALG is a configuration error naming both, in one line', async (t) => {
  const rsaForEs256 = configError(t, { JWT_ALG: 'ES256' }, 'JWT_PRIVATE_KEY')
  t.match(rsaForEs256.message, /^configuration error: JWT_PRIVATE_KEY is an RSA key of 2048 bits, but JWT_ALG ES256 needs an EC key on P-256/)
  const ecForRs256 = configError(t, pems(generateKeyPairSync('ec', { namedCurve: 'P-256' })), 'JWT_PRIVATE_KEY')
  t.match(ecForRs256.message, /is an EC key on P-256, but JWT_ALG RS256 needs an RSA key of at least 2048 bits/)
  const edForEs256 = configError(t, { JWT_ALG: 'ES256', ...pems(generateKeyPairSync('ed25519')) }, 'JWT_PRIVATE_KEY')
  t.match(edForEs256.message, /is an Ed25519 key, but JWT_ALG ES256 needs an EC key on P-256/)
  const p384 = configError(t, { JWT_ALG: 'ES256', ...pems(generateKeyPairSync('ec', { namedCurve: 'P-384' })) }, 'JWT_PRIVATE_KEY')
  t.match(p384.message, /is an EC key on secp384r1, but JWT_ALG ES256/)
  configError(t, { JWT_ALG: 'EdDSA' }, 'JWT_PRIVATE_KEY')
})

t.test('additional public keys may be of any signing type (a change of JWT_ALG), and only those', async (t) => {
  const ec = pems(generateKeyPairSync('ec', { namedCurve: 'P-256' }))
  const ed = pems(generateKeyPairSync('ed25519'))
  const config = loadConfig(env({ JWT_ALG: 'ES256', ...ec, JWT_ADDITIONAL_PUBLIC_KEYS: testKeys.publicKey + ed.JWT_PUBLIC_KEY }))
  t.equal(config.JWT_ADDITIONAL_PUBLIC_KEYS.length, 2, 'the RSA key of before and an Ed25519 key')
  const x25519 = generateKeyPairSync('x25519').publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const error = configError(t, { JWT_ADDITIONAL_PUBLIC_KEYS: x25519 }, 'JWT_ADDITIONAL_PUBLIC_KEYS')
  t.match(error.message, /holds a x25519 key/)
  const small = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  configError(t, { JWT_ADDITIONAL_PUBLIC_KEYS: small }, 'JWT_ADDITIONAL_PUBLIC_KEYS')
})

t.test('a public key that does not match the private key is refused', async (t) => {
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 })
  configError(t, { JWT_PUBLIC_KEY: other.publicKey.export({ type: 'spki', format: 'pem' }).toString() }, 'JWT_PUBLIC_KEY')
})

t.test('PEMs with literal \\n sequences and PKCS#1 private keys are accepted', async (t) => {
  const pkcs1 = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const oneLine = (pem: string) => pem.trim().replace(/\n/g, '\\n')
  const config = loadConfig(env({
    JWT_PRIVATE_KEY: oneLine(pkcs1.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString()),
    JWT_PUBLIC_KEY: oneLine(pkcs1.publicKey.export({ type: 'spki', format: 'pem' }).toString())
  }))
  t.match(config.JWT_PRIVATE_KEY, /^-----BEGIN RSA PRIVATE KEY-----\n/)
})

t.test('additional public keys are split into single PEMs and each must parse', async (t) => {
  const a = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const b = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const config = loadConfig(env({ JWT_ADDITIONAL_PUBLIC_KEYS: (a + b).replace(/\n/g, '\\n') }))
  t.equal(config.JWT_ADDITIONAL_PUBLIC_KEYS.length, 2)
  configError(t, { JWT_ADDITIONAL_PUBLIC_KEYS: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----' }, 'JWT_ADDITIONAL_PUBLIC_KEYS')
})

t.test('LOG_FORMAT is json or gcp; pretty only in dev mode, where pino-pretty is installed', async (t) => {
  t.equal(loadConfig(env({ LOG_FORMAT: 'gcp' })).LOG_FORMAT, 'gcp')
  t.equal(loadConfig(env({ LOG_FORMAT: 'json' })).LOG_FORMAT, 'json')
  configError(t, { LOG_FORMAT: 'xml' }, 'LOG_FORMAT')
  configError(t, { LOG_FORMAT: 'GCP' }, 'LOG_FORMAT')
  const pretty = configError(t, { LOG_FORMAT: 'pretty' }, 'LOG_FORMAT')
  t.match(pretty.message, /dev mode/, 'the line says where pretty is available')
  t.equal(loadConfig(env({ LOG_FORMAT: 'pretty' }), { embedded: true }).LOG_FORMAT, 'pretty')
})

t.test('VAULT_TOKEN is required with VAULT_ADDR', async (t) => {
  configError(t, { VAULT_ADDR: 'http://vault:8200' }, 'VAULT_TOKEN')
})

t.test('defaults follow API.md and TRUST_PROXY becomes a list', async (t) => {
  const config = loadConfig(env({ NODE_ENV: undefined, TRUST_PROXY: '10.0.0.0/8, 127.0.0.1' }))
  t.match(config, {
    PORT: 3000,
    CORS_ORIGIN: '*',
    VAULT_MOUNT: 'secret',
    TOKEN_TTL_SECONDS: 3600,
    RATE_LIMIT_TOKEN_PER_CLIENT: 100,
    RATE_LIMIT_AUTH_FAILURES_PER_IP: 30,
    RATE_LIMIT_BEARER_FAILURES_PER_IP: 100,
    TOKEN_MONTHLY_QUOTA: 10_000,
    MAX_AGENTS_PER_OWNER: 100,
    AUDIT_RETENTION_DAYS: 90,
    METRICS_ENABLED: true,
    DOCS_ENABLED: true,
    NODE_ENV: 'production',
    LOG_LEVEL: 'info',
    LOG_FORMAT: 'json'
  })
  t.same(config.TRUST_PROXY, ['10.0.0.0/8', '127.0.0.1'])
  t.equal(config.JWT_PUBLIC_KEY, testKeys.publicKey.trim())
})

t.test('limits can be turned off with 0', async (t) => {
  t.equal(loadConfig(env({ TOKEN_MONTHLY_QUOTA: '0' })).TOKEN_MONTHLY_QUOTA, 0)
})
