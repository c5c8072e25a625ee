import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { createLocalJWKSet, jwtVerify } from 'jose'
import { createSchema, testEnv } from '../helper.js'
import { loadConfig } from '../../plugins/config.js'
import { createKeyRing } from '../../plugins/keys.js'
import { baseEnv, ensureBuild, sparePort } from '../support/private-services.js'
import { agentidp, json, startServer } from '../support/cli.js'

/**
 * `agentidp keys generate`: pairs for `--alg` (RS256: RSA-2048 by default, ES256: EC P-256, EdDSA:
 * Ed25519) as PEM files or env lines, files 0600, never over an existing file without --force —
 * and what it writes is what the server takes: a server started on nothing but the generated
 * `.env` for its keys and JWT_ALG signs tokens of that algorithm that verify against its JWKS
 * under the kid the command printed.
 */
// a server and a dozen command processes, each a node start-up: on a busy 2-core machine far beyond .taprc's 120 s
t.setTimeout(300_000)
await ensureBuild()
const work = await mkdtemp(join(tmpdir(), 'agentidp-keys-'))
t.teardown(() => rm(work, { recursive: true, force: true }))

const mode = async (path: string) => (await stat(path)).mode & 0o777

t.test('--format pem writes jwt-private.pem and jwt-public.pem, 0600, a pair the configuration accepts', async (t) => {
  const directory = join(work, 'pem')
  const result = await agentidp(t, ['keys', 'generate', '--format', 'pem', '--out-dir', directory])
  t.equal(result.code, 0, { stderr: result.stderr })
  const output = json<{ privateKeyFile: string, publicKeyFile: string, alg: string, kid: string }>(result)
  t.equal(output.privateKeyFile, join(directory, 'jwt-private.pem'))
  t.equal(output.publicKeyFile, join(directory, 'jwt-public.pem'))
  t.equal(await mode(output.privateKeyFile), 0o600, 'the private key file is 0600')
  t.equal(await mode(output.publicKeyFile), 0o600, 'the public key file is 0600')
  const privateKey = await readFile(output.privateKeyFile, 'utf8')
  const publicKey = await readFile(output.publicKeyFile, 'utf8')
  t.match(privateKey, /^-----BEGIN PRIVATE KEY-----\n/)
  t.match(publicKey, /^-----BEGIN PUBLIC KEY-----\n/)
  t.notOk(result.stdout.includes('PRIVATE KEY') || result.stderr.includes('PRIVATE KEY'), 'the key itself is not printed')

  const config = loadConfig(testEnv('postgres://127.0.0.1/x', { JWT_PRIVATE_KEY: privateKey, JWT_PUBLIC_KEY: publicKey }))
  const ring = await createKeyRing(config.JWT_PRIVATE_KEY)
  t.equal(ring.currentKid, output.kid, 'the printed kid is the one the JWKS will publish')
  const [published] = ring.jwks().keys
  t.equal(published.kty === 'RSA' ? published.n.length : 0, 342, 'an RSA key, a 2048-bit modulus')
  t.equal(output.alg, 'RS256', 'RS256 unless --alg says otherwise')

  const again = await agentidp(t, ['keys', 'generate', '--format', 'pem', '--out-dir', directory])
  t.equal(again.code, 3, 'an existing key file is refused: exit 3')
  t.match(again.stderr, /already exists; .*--force/)
  t.equal(await readFile(output.privateKeyFile, 'utf8'), privateKey, 'and left as it was')

  const forced = await agentidp(t, ['keys', 'generate', '--format', 'pem', '--out-dir', directory, '--force'])
  t.equal(forced.code, 0)
  t.not(await readFile(output.privateKeyFile, 'utf8'), privateKey, '--force replaces it')
  t.equal(await mode(output.privateKeyFile), 0o600)
})

t.test('env lines: to stdout, or to --output-file at 0600; a file that exists is refused; options that clash are a usage error', async (t) => {
  const stdout = await agentidp(t, ['keys', 'generate'])
  t.equal(stdout.code, 0)
  const lines = stdout.stdout.split('\n')
  t.equal(lines.length, 4, 'three lines and a final newline')
  t.equal(lines.shift(), 'JWT_ALG=RS256', 'first the algorithm the pair is for')
  t.match(lines[0], /^JWT_PRIVATE_KEY=-----BEGIN PRIVATE KEY-----\\n[A-Za-z0-9+/=\\n]+-----END PRIVATE KEY-----$/)
  t.match(lines[1], /^JWT_PUBLIC_KEY=-----BEGIN PUBLIC KEY-----\\n[A-Za-z0-9+/=\\n]+-----END PUBLIC KEY-----$/)
  t.match(stdout.stderr, /kid [A-Za-z0-9_-]{43}/)

  const file = join(work, 'keys.env')
  await writeFile(file, 'keep me\n')
  const refused = await agentidp(t, ['keys', 'generate', '--output-file', file])
  t.equal(refused.code, 3)
  t.equal(await readFile(file, 'utf8'), 'keep me\n')

  const other = join(work, 'other.env')
  const written = await agentidp(t, ['keys', 'generate', '--output-file', other])
  t.equal(written.code, 0)
  t.same(Object.keys(json(written)).sort(), ['alg', 'envFile', 'kid'])
  t.equal(await mode(other), 0o600)

  const clash = await agentidp(t, ['keys', 'generate', '--format', 'pem', '--output-file', other])
  t.equal(clash.code, 2)
  t.match(clash.stderr, /--output-file is for --format env/)
})

for (const alg of ['RS256', 'ES256', 'EdDSA'] as const) {
  const args = alg === 'RS256' ? [] : ['--alg', alg]
  t.test(`a server whose keys are the generated .env${alg === 'RS256' ? ' (no --alg: RS256)' : ` of --alg ${alg}`} issues ${alg} tokens that verify against its JWKS`, async (t) => {
    const { databaseUrl } = await createSchema(t)
    const directory = await mkdtemp(join(work, 'server-'))
    const generated = await agentidp(t, ['keys', 'generate', ...args, '--output-file', join(directory, '.env')])
    t.equal(generated.code, 0, { stderr: generated.stderr })
    const { kid, alg: printed } = json<{ kid: string, alg: string }>(generated)
    t.equal(printed, alg)
    t.match(await readFile(join(directory, '.env'), 'utf8'), new RegExp(`^JWT_ALG=${alg}\n`), 'the .env says JWT_ALG itself')

    const port = await sparePort()
    const issuer = `http://127.0.0.1:${port}`
    // no JWT_* variables: the server finds them only in the .env of its working directory
    const env = {
      ...testEnv(databaseUrl, { JWT_PRIVATE_KEY: undefined, JWT_PUBLIC_KEY: undefined, JWT_ALG: undefined }),
      ...baseEnv(),
      NODE_ENV: 'production',
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      PORT: String(port),
      ISSUER_URL: issuer
    }
    t.notOk('JWT_PRIVATE_KEY' in env && env.JWT_PRIVATE_KEY !== undefined)
    const server = await startServer(t, env, port, directory)

    const admin = await agentidp(t, ['bootstrap', '--email', `keys-admin-${alg.toLowerCase()}@example.com`], { env: { DATABASE_URL: databaseUrl } })
    t.equal(admin.code, 0, { stderr: admin.stderr })
    const { clientId, clientSecret } = json<{ clientId: string, clientSecret: string }>(admin)
    const token = await agentidp(t, ['token', 'get', '--access-token-only'], { env: { AGENTIDP_URL: issuer, AGENTIDP_CLIENT_ID: clientId, AGENTIDP_CLIENT_SECRET: clientSecret } })
    t.equal(token.code, 0, { stderr: token.stderr })

    const jwks = await (await fetch(`${issuer}/.well-known/jwks.json`)).json() as { keys: Array<{ kid: string, alg: string }> }
    t.same(jwks.keys.map((key) => [key.kid, key.alg]), [[kid, alg]], 'the JWKS publishes the generated key under the printed kid, with its alg')
    const { payload, protectedHeader } = await jwtVerify(token.stdout.trim(), createLocalJWKSet(jwks as never), { issuer, audience: issuer, algorithms: [alg] })
    t.equal(protectedHeader.kid, kid)
    t.equal(protectedHeader.alg, alg)
    t.equal(payload.sub, clientId, 'the token verifies with the JWKS')
    const self = await fetch(`${issuer}/api/v1/agents/${clientId}`, { headers: { authorization: `Bearer ${token.stdout.trim()}` } })
    t.equal(self.status, 200, 'and the management API accepts it')

    server.child.kill('SIGTERM')
    t.equal((await server.exited).code, 0)
  })
}
