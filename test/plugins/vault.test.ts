import t from 'tap'
import Fastify from 'fastify'
import configPlugin from '../../plugins/config.js'
import vaultPlugin from '../../plugins/vault.js'
import { build, createSchema, LogCapture, seedAdmin, testConfig, testEnv } from '../helper.js'
import { baseEnv, compiledServer, ensureBuild, sparePort, startProcess } from '../support/private-services.js'
import { startVaultStandIn } from '../support/vault-server.js'
import { timedInProcess } from '../support/timing.js'
import { accessToken, credentialsUrl, credentialUrl, registerClient, requestToken, type Client } from '../routes/oauth/support.js'
import { hashSecret, generateSecret } from '../../services/secrets.js'
import { reconcile, vaultPathOf } from '../../services/vault-secrets.js'
import { insertCredential } from '../../repositories/credentials.js'
type Tap = Parameters<Parameters<typeof t.test>[0]>[0]

/**
 * Client secrets in Vault KV v2 (plugins/vault.ts, services/vault-secrets.ts), against the KV v2
 * stand-in: where they are stored, rotation and revocation, every fault (sealed, 403, slow, down)
 * and that no failure between the two writes leaves a row without its secret or a secret without
 * its row.
 */
// short enough for the fault tests to be quick, long enough for a busy CI machine's normal answers
const TIMEOUT_MS = 1000
const vault = await startVaultStandIn()
t.teardown(() => vault.close())
const logs = new LogCapture()
const app = await build(t, { env: { VAULT_ADDR: vault.address, VAULT_TOKEN: vault.token, VAULT_TIMEOUT_MS: String(TIMEOUT_MS) }, logStream: logs })
const admin = await seedAdmin(app)

const generate = () => registerClient(app, admin.headers)
const rotate = (client: Client) => app.inject({ method: 'POST', url: `${credentialUrl(client.agentId, client.credentialId)}/rotate`, headers: admin.headers })
const revoke = (client: Client) => app.inject({ method: 'DELETE', url: credentialUrl(client.agentId, client.credentialId), headers: admin.headers })
const row = async (credentialId: string) => (await app.pg.query<{ secret_hash: string | null, vault_path: string | null, vault_version: number | null, status: string }>(
  'SELECT secret_hash, vault_path, vault_version, status FROM credentials WHERE credential_id = $1', [credentialId])).rows[0]
const rowsOf = async (agentId: string) => (await app.pg.query('SELECT credential_id FROM credentials WHERE client_id = $1', [agentId])).rows
const secretsOf = (agentId: string) => [...vault.secrets.keys()].filter((path) => path.startsWith(`agentidp/agents/${agentId}/`))
const dataReads = () => vault.requests.filter((line) => line.startsWith('GET /v1/secret/data/')).length
/** an agent with no credential yet, registered through the API */
async function bareAgent (): Promise<string> {
  const res = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: admin.headers, payload: (await import('../helper.js')).agentBody() })
  return res.json().agentId
}
async function restoreVault (): Promise<void> {
  vault.sealed = false
  vault.forbidden = false
  vault.delayMs = 0
}

t.afterEach(restoreVault)

t.test('a generated secret lives in Vault KV v2 as an argon2id hash at the documented path; the row names path and version and holds no hash', async (t) => {
  const client = await generate()
  const stored = await row(client.credentialId)
  t.equal(stored.vault_path, `agentidp/agents/${client.agentId}/credentials/${client.credentialId}`)
  t.equal(stored.vault_version, 1)
  t.equal(stored.secret_hash, null)
  const data = vault.read(stored.vault_path as string)
  t.match(data, { argon2id: /^\$argon2id\$/ })
  t.notOk(JSON.stringify(data).includes(client.secret.slice('sk_live_'.length)), 'Vault does not hold the secret itself')
  t.ok(vault.requests.includes(`POST /v1/secret/data/${stored.vault_path}`), 'written with a KV v2 data write')
})

t.test('the token endpoint verifies a Vault-held secret, and does not call Vault again for the same secret', async (t) => {
  const client = await generate()
  await accessToken(app, client)
  const reads = dataReads()
  for (let n = 0; n < 5; n += 1) await accessToken(app, client)
  t.equal(dataReads(), reads, 'no Vault read for a secret this instance already verified')
  const wrong = await requestToken(app, { agentId: client.agentId, secret: generateSecret(client.credentialId) })
  t.equal(wrong.statusCode, 401, 'a wrong secret for the credential is invalid_client')
  t.equal(dataReads(), reads, 'nor for a wrong one: the hash read once is kept by path and version')
})

t.test('rotation writes a new version with cas, the old secret stops at once, the new one works, the old version is destroyed', async (t) => {
  const client = await generate()
  await accessToken(app, client)
  const res = await rotate(client)
  t.equal(res.statusCode, 200)
  const stored = await row(client.credentialId)
  t.equal(stored.vault_version, 2, 'the row names version 2')
  const secret = vault.secrets.get(stored.vault_path as string)
  t.equal(secret?.currentVersion, 2)
  t.equal(secret?.versions.get(1)?.destroyed, true, 'version 1 (the old hash) is destroyed')
  t.equal((await requestToken(app, client)).statusCode, 401, 'the old secret is refused at once, though it was verified before')
  await accessToken(app, { agentId: client.agentId, secret: res.json().clientSecret })
})

t.test('a rotation whose cas does not match (another writer wrote a version the row does not name) still lands on top of it', async (t) => {
  const client = await generate()
  const path = vaultPathOf(client.agentId, client.credentialId)
  // what a rotation that failed before its commit leaves: version 2 that no row names
  vault.plant(path, { argon2id: await hashSecret(generateSecret(client.credentialId)) })
  t.equal((await requestToken(app, client)).statusCode, 200, 'a version the row does not name does not replace the secret')
  const res = await rotate(client)
  t.equal(res.statusCode, 200)
  t.equal((await row(client.credentialId)).vault_version, 3)
  await accessToken(app, { agentId: client.agentId, secret: res.json().clientSecret })
})

t.test('revocation deletes every version and the metadata; the secret is refused at once', async (t) => {
  const client = await generate()
  await accessToken(app, client)
  t.equal((await revoke(client)).statusCode, 204)
  t.same(secretsOf(client.agentId), [], 'nothing of the credential is left in Vault')
  t.ok(vault.requests.includes(`DELETE /v1/secret/metadata/${vaultPathOf(client.agentId, client.credentialId)}`))
  t.equal((await requestToken(app, client)).statusCode, 401)
})

t.test('decommissioning an agent erases every secret it had in Vault', async (t) => {
  const client = await generate()
  await app.inject({ method: 'POST', url: credentialsUrl(client.agentId), headers: admin.headers })
  t.equal(secretsOf(client.agentId).length, 2)
  const res = await app.inject({ method: 'DELETE', url: `/api/v1/agents/${client.agentId}`, headers: admin.headers })
  t.ok(res.statusCode < 300, `decommissioned: ${res.statusCode}`)
  t.same(secretsOf(client.agentId), [])
})

const faults: Array<[string, () => void | Promise<void>, () => void | Promise<void>]> = [
  ['sealed (503 from sys/health and everywhere)', () => { vault.sealed = true }, () => { vault.sealed = false }],
  ['refusing the token (403)', () => { vault.forbidden = true }, () => { vault.forbidden = false }],
  ['slow (answers after the timeout)', () => { vault.delayMs = TIMEOUT_MS * 4 }, () => { vault.delayMs = 0 }],
  ['down (connection refused)', () => vault.down(), () => vault.up()]
]

for (const [name, fail, recover] of faults) {
  t.test(`Vault ${name}: credential operations answer 503 quickly, nothing half-written; /health says vault error; recovery without restart`, async (t) => {
    const client = await generate()
    await accessToken(app, client)
    const agentId = await bareAgent()
    await fail()
    try {
      const { result: created, ms } = await timedInProcess(() => app.inject({ method: 'POST', url: credentialsUrl(agentId), headers: admin.headers }))
      t.equal(created.statusCode, 503, 'generate: 503')
      t.equal(created.json().code, 'SERVICE_UNAVAILABLE')
      t.ok(ms < TIMEOUT_MS * 3, `answered in ${Math.round(ms)} ms`)
      t.same(await rowsOf(agentId), [], 'no row without its secret')

      const rotated = await rotate(client)
      t.equal(rotated.statusCode, 503, 'rotate: 503')
      t.equal((await row(client.credentialId)).vault_version, 1, 'the row still names the old version')
      await accessToken(app, client)
      t.pass('a secret this instance verified keeps obtaining tokens (the documented policy)')
      const unverified = await app.inject({ method: 'POST', url: credentialsUrl(client.agentId), headers: admin.headers })
      t.equal(unverified.statusCode, 503)

      const health = await app.inject({ method: 'GET', url: '/health' })
      t.equal(health.statusCode, 503)
      t.match(health.json(), { status: 'degraded', vault: 'error', postgres: 'connected' })
      t.equal((await app.inject({ method: 'GET', url: '/health/ready' })).statusCode, 503)
    } finally {
      await recover()
    }
    // the slow Vault may have applied writes after the client gave up: they are strays, never usable
    await reconcile(app.vault!.kv, app.pg, { graceMs: 0 })
    t.same(secretsOf(agentId), [], 'no secret without its row once reconciled')
    t.equal((await app.inject({ method: 'GET', url: '/health' })).json().vault, 'connected', 'recovered without restart')
    t.equal((await app.inject({ method: 'POST', url: credentialsUrl(agentId), headers: admin.headers })).statusCode, 201)
  })
}

t.test('Vault down: a Vault-held secret this instance never verified answers 503 temporarily_unavailable, not invalid_client', async (t) => {
  const client = await generate()
  await vault.down()
  t.teardown(() => vault.up())
  const res = await requestToken(app, client)
  t.equal(res.statusCode, 503)
  t.equal(res.json().error, 'temporarily_unavailable')
})

t.test('no orphan: a failure after the Vault write and before the row (insert fails) leaves neither row nor secret', async (t) => {
  const agentId = await bareAgent()
  await app.pg.query(`CREATE OR REPLACE FUNCTION refuse_credential() RETURNS trigger AS $$
    BEGIN IF NEW.client_id = '${agentId}' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql`)
  await app.pg.query('CREATE TRIGGER refuse_credential BEFORE INSERT ON credentials FOR EACH ROW EXECUTE FUNCTION refuse_credential()')
  t.teardown(() => app.pg.query('DROP TRIGGER IF EXISTS refuse_credential ON credentials'))
  const res = await app.inject({ method: 'POST', url: credentialsUrl(agentId), headers: admin.headers })
  t.equal(res.statusCode, 500)
  t.ok(vault.requests.some((line) => line.startsWith(`POST /v1/secret/data/agentidp/agents/${agentId}/`)), 'the Vault write happened')
  t.same(await rowsOf(agentId), [])
  t.same(secretsOf(agentId), [], 'the secret was removed at once')
})

t.test('no orphan: a failure at COMMIT (after both writes) leaves neither row nor secret', async (t) => {
  const agentId = await bareAgent()
  await app.pg.query(`CREATE OR REPLACE FUNCTION refuse_commit() RETURNS trigger AS $$
    BEGIN IF NEW.client_id = '${agentId}' THEN RAISE EXCEPTION 'injected commit failure'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql`)
  await app.pg.query(`CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT ON credentials DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION refuse_commit()`)
  t.teardown(() => app.pg.query('DROP TRIGGER IF EXISTS refuse_commit ON credentials'))
  const res = await app.inject({ method: 'POST', url: credentialsUrl(agentId), headers: admin.headers })
  t.equal(res.statusCode, 500)
  t.same(await rowsOf(agentId), [])
  t.same(secretsOf(agentId), [])
})

t.test('no orphan: when the clean-up fails too (Vault fails right after the write, as in a crash), the stray is unusable and reconciliation removes it', async (t) => {
  const agentId = await bareAgent()
  await app.pg.query(`CREATE OR REPLACE FUNCTION refuse_credential2() RETURNS trigger AS $$
    BEGIN IF NEW.client_id = '${agentId}' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql`)
  await app.pg.query('CREATE TRIGGER refuse_credential2 BEFORE INSERT ON credentials FOR EACH ROW EXECUTE FUNCTION refuse_credential2()')
  t.teardown(() => app.pg.query('DROP TRIGGER IF EXISTS refuse_credential2 ON credentials'))
  vault.failNext(/^DELETE \/v1\/secret\/metadata\//)
  const res = await app.inject({ method: 'POST', url: credentialsUrl(agentId), headers: admin.headers })
  t.equal(res.statusCode, 500)
  const [stray] = secretsOf(agentId)
  t.ok(stray !== undefined, 'a secret without its row is left')
  const credentialId = stray.split('/').pop() as string
  // it can't authenticate anything: authentication starts from the row
  const attempt = await requestToken(app, { agentId, secret: generateSecret(credentialId) })
  t.equal(attempt.statusCode, 401)

  t.same(await reconcile(app.vault!.kv, app.pg, { graceMs: 60_000 }), { erased: 0, versionsDestroyed: 0 }, 'a fresh one is left alone (a generate may be in progress)')
  const outcome = await reconcile(app.vault!.kv, app.pg, { graceMs: 60_000, now: Date.now() + 120_000 })
  t.equal(outcome.erased, 1)
  t.same(secretsOf(agentId), [])
})

t.test('no orphan: a rotation whose commit fails keeps the old secret working; the unnamed version is destroyed by reconciliation', async (t) => {
  const client = await generate()
  await app.pg.query(`CREATE OR REPLACE FUNCTION refuse_rotation() RETURNS trigger AS $$
    BEGIN IF NEW.credential_id = '${client.credentialId}' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql`)
  await app.pg.query('CREATE TRIGGER refuse_rotation BEFORE UPDATE ON credentials FOR EACH ROW EXECUTE FUNCTION refuse_rotation()')
  const res = await rotate(client)
  await app.pg.query('DROP TRIGGER IF EXISTS refuse_rotation ON credentials')
  t.equal(res.statusCode, 500)
  t.equal((await row(client.credentialId)).vault_version, 1)
  await accessToken(app, client)
  const path = vaultPathOf(client.agentId, client.credentialId)
  t.equal(vault.secrets.get(path)?.currentVersion, 2, 'version 2 was written')
  const outcome = await reconcile(app.vault!.kv, app.pg, { graceMs: 0 })
  t.ok(outcome.versionsDestroyed >= 1)
  t.equal(vault.secrets.get(path)?.versions.get(2)?.destroyed, true)
  await accessToken(app, client)
  t.equal((await rotate(client)).statusCode, 200, 'the next rotation lands on top of the stray version')
})

t.test('reconciliation erases the secret of a credential revoked while Vault was down', async (t) => {
  const client = await generate()
  await vault.down()
  const res = await revoke(client)
  await vault.up()
  t.equal(res.statusCode, 204, 'revocation does not wait for Vault')
  t.equal((await requestToken(app, client)).statusCode, 401, 'and applies at once')
  t.equal(secretsOf(client.agentId).length, 1)
  await app.jobs.vaultReconciliation?.runNow()
  t.same(secretsOf(client.agentId), [])
})

t.test('migrating: a credential hashed in PostgreSQL keeps working with Vault on; rotating moves it into Vault', async (t) => {
  const agentId = await bareAgent()
  const credentialId = crypto.randomUUID()
  const secret = generateSecret(credentialId)
  await insertCredential(app.pg, { credentialId, clientId: agentId, secretHash: await hashSecret(secret), expiresAt: null })
  await accessToken(app, { agentId, secret })
  const res = await rotate({ agentId, credentialId, secret })
  t.equal(res.statusCode, 200)
  const stored = await row(credentialId)
  t.equal(stored.secret_hash, null, 'no hash left in PostgreSQL')
  t.equal(stored.vault_path, vaultPathOf(agentId, credentialId))
  t.equal((await requestToken(app, { agentId, secret })).statusCode, 401)
  await accessToken(app, { agentId, secret: res.json().clientSecret })
})

t.test('the renewal job renews a renewable token', async (t) => {
  const before = vault.renewals
  t.ok(app.jobs.vaultRenewal !== undefined, 'scheduled for a renewable token')
  t.equal(await app.jobs.vaultRenewal?.runNow(), 3600)
  t.equal(vault.renewals, before + 1)
})

t.test('/health and /health/ready report vault connected when enabled', async (t) => {
  const health = await app.inject({ method: 'GET', url: '/health' })
  t.same(health.json(), { status: 'ok', postgres: 'connected', redis: 'connected', vault: 'connected' })
  t.match((await app.inject({ method: 'GET', url: '/health/ready' })).json(), { status: 'ok', vault: 'connected' })
})

/** Only the config and vault plugins: what a start-up with this configuration does about Vault. */
async function startVault (t: Tap, env: Record<string, string>): Promise<void> {
  const { databaseUrl } = await createSchema(t)
  const bare = Fastify()
  t.teardown(() => bare.close())
  await bare.register(configPlugin, { config: testConfig(databaseUrl, env) })
  await bare.register(vaultPlugin)
}

t.test('start-up refuses a token Vault does not accept (one line naming VAULT_TOKEN), a sealed Vault and an unreachable one', async (t) => {
  const other = await startVaultStandIn()
  t.teardown(() => other.close())
  await t.rejects(startVault(t, { VAULT_ADDR: other.address, VAULT_TOKEN: 'hvs.not-this-one' }),
    { name: 'ConfigError', message: /^configuration error: VAULT_TOKEN cannot .* in Vault at 127\.0\.0\.1:\d+ \(permission denied \(403\)\); the policy it needs is in ops\/runbooks\/vault\.md$/ })
  other.sealed = true
  await t.rejects(startVault(t, { VAULT_ADDR: other.address, VAULT_TOKEN: other.token }), { name: 'DependencyUnavailableError', dependency: 'vault' })
  other.sealed = false
  await other.down()
  await t.rejects(startVault(t, { VAULT_ADDR: other.address, VAULT_TOKEN: other.token, VAULT_TIMEOUT_MS: '200' }), { name: 'DependencyUnavailableError', dependency: 'vault' })
})

t.test('a token that may look itself up but not write the mount refuses the start', async (t) => {
  const other = await startVaultStandIn()
  t.teardown(() => other.close())
  other.failNext(/^POST \/v1\/secret\/data\/agentidp\/probe\//, 403)
  await t.rejects(startVault(t, { VAULT_ADDR: other.address, VAULT_TOKEN: other.token }),
    { name: 'ConfigError', message: /VAULT_TOKEN cannot write secret\/data\/agentidp\/\* in Vault/ })
})

t.test('the server refuses to start with a token Vault refuses: exit 1, one stderr line, no token in it', async (t) => {
  await ensureBuild()
  const { databaseUrl } = await createSchema(t)
  const port = await sparePort()
  const env = { ...baseEnv(), ...testEnv(databaseUrl), NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(port), VAULT_ADDR: vault.address, VAULT_TOKEN: 'hvs.refused-token-value' }
  const server = startProcess(t, process.execPath, [compiledServer], { env })
  const { code } = await server.exited
  t.equal(code, 1)
  const lines = server.stderr.trim().split('\n')
  t.equal(lines.length, 1, server.stderr)
  t.match(lines[0], /^configuration error: VAULT_TOKEN cannot .* \(permission denied \(403\)\)/)
  t.notOk(server.stderr.includes('hvs.refused-token-value') || server.stdout.includes('hvs.refused-token-value'), 'the token is not printed')
})

t.test('VAULT_ADDR without VAULT_TOKEN, or an unreadable VAULT_CACERT, refuses the start', async (t) => {
  const { databaseUrl } = await createSchema(t)
  t.throws(() => testConfig(databaseUrl, { VAULT_ADDR: vault.address }), { message: /VAULT_TOKEN is required when VAULT_ADDR is set/ })
  await t.rejects(startVault(t, { VAULT_ADDR: vault.address, VAULT_TOKEN: vault.token, VAULT_CACERT: '/nonexistent/ca.pem' }),
    { message: /VAULT_CACERT cannot be read \(ENOENT\)/ })
})

t.test('neither the Vault token nor any client secret appears in the logs', async (t) => {
  t.notOk(logs.text.includes(vault.token), 'no token')
  t.notOk(/sk_live_[A-Za-z0-9_-]{20,}/.test(logs.text), 'no secret')
  t.notOk(logs.text.includes('$argon2id$'), 'no hash')
})
