import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Option, type Command } from 'commander'
import { createKeyRing } from '../../plugins/keys.js'
import { DEFAULT_SIGNING_ALG, generateSigningPair, SIGNING_ALGORITHMS, type PemPair, type SigningAlg } from '../../lib/signing-keys.js'
import { usageError } from '../exit-codes.js'
import { writeSecretFile } from '../files.js'
import { note, outputOption, print, resolveFormat } from '../output.js'

/**
 * `keys generate`: a signing pair for `--alg` (RS256: RSA-2048, ES256: EC P-256, EdDSA: Ed25519)
 * in the form the server reads (plugins/config.ts): JWT_PRIVATE_KEY (PKCS#8 PEM) and
 * JWT_PUBLIC_KEY (SPKI PEM), as two PEM files or as env lines with literal `\n` (one line each: a
 * `.env` file, `docker run --env-file`), which also say JWT_ALG so that the file alone starts a
 * server. Files are 0600.
 */

const KEY_TYPE_OF: Record<SigningAlg, string> = { RS256: 'RSA-2048', ES256: 'EC P-256', EdDSA: 'Ed25519' }

/** `NAME=value` lines: JWT_ALG, then one line per key, newlines written as `\n` (the server turns them back). */
export function envLines (pair: PemPair, alg: SigningAlg): string {
  const oneLine = (pem: string) => pem.trim().replace(/\r?\n/g, '\\n')
  return `JWT_ALG=${alg}\nJWT_PRIVATE_KEY=${oneLine(pair.privateKey)}\nJWT_PUBLIC_KEY=${oneLine(pair.publicKey)}\n`
}

interface GenerateOptions { alg: SigningAlg, format: 'env' | 'pem', outDir?: string, outputFile?: string, force?: boolean, output?: string }

export async function keysGenerate (options: GenerateOptions): Promise<void> {
  if (options.format === 'pem' && options.outputFile !== undefined) throw usageError('--output-file is for --format env; --format pem writes into --out-dir')
  if (options.format === 'env' && options.outDir !== undefined) throw usageError('--out-dir is for --format pem; --format env writes to --output-file or stdout')
  const { alg } = options
  const pair = await generateSigningPair(alg)
  // the key id the JWKS will publish for it (RFC 7638 thumbprint): a check for the operator
  const { currentKid: kid } = await createKeyRing(pair.privateKey)
  if (options.format === 'pem') {
    const directory = options.outDir ?? '.'
    await mkdir(directory, { recursive: true, mode: 0o700 })
    const privateKeyFile = await writeSecretFile(join(directory, 'jwt-private.pem'), pair.privateKey, options)
    const publicKeyFile = await writeSecretFile(join(directory, 'jwt-public.pem'), pair.publicKey, options)
    note(`keys: ${KEY_TYPE_OF[alg]} pair written (mode 0600); set JWT_PRIVATE_KEY and JWT_PUBLIC_KEY to their contents and JWT_ALG to ${alg}`)
    print(resolveFormat(options.output), { privateKeyFile, publicKeyFile, alg, kid })
    return
  }
  if (options.outputFile !== undefined) {
    const file = await writeSecretFile(options.outputFile, envLines(pair, alg), options)
    note(`keys: ${KEY_TYPE_OF[alg]} pair written to ${file} (mode 0600) as JWT_ALG, JWT_PRIVATE_KEY and JWT_PUBLIC_KEY lines`)
    print(resolveFormat(options.output), { envFile: file, alg, kid })
    return
  }
  process.stdout.write(envLines(pair, alg))
  note(`keys: ${KEY_TYPE_OF[alg]} pair for ${alg}, kid ${kid}`)
}

export function registerKeysCommands (program: Command): void {
  const group = program.command('keys').description('signing keys for access tokens')
  group.command('generate')
    .description('generate a signing pair for JWT_PRIVATE_KEY / JWT_PUBLIC_KEY (RSA-2048, EC P-256 or Ed25519, as --alg says)')
    .addOption(new Option('--alg <alg>', 'the JWT_ALG the pair is for: RS256 (RSA-2048), ES256 (EC P-256) or EdDSA (Ed25519)')
      .choices([...SIGNING_ALGORITHMS]).default(DEFAULT_SIGNING_ALG))
    .addOption(new Option('--format <format>', 'env: JWT_ALG=…, JWT_PRIVATE_KEY=… and JWT_PUBLIC_KEY=… lines (literal \\n); pem: two PEM files')
      .choices(['env', 'pem']).default('env'))
    .option('--out-dir <dir>', 'with --format pem: where jwt-private.pem and jwt-public.pem go (default: the current directory)')
    .option('--output-file <file>', 'with --format env: write the lines to this file (mode 0600) instead of stdout')
    .option('--force', 'replace files that exist')
    .addOption(outputOption())
    .addHelpText('after', `
Examples:
  agentidp keys generate --output-file .env.keys       # JWT_ALG and key lines for a .env file or docker --env-file
  agentidp keys generate --format pem --out-dir keys/  # keys/jwt-private.pem, keys/jwt-public.pem
  agentidp keys generate --alg ES256 --output-file .env.keys  # an EC P-256 pair and JWT_ALG=ES256
Files are created with mode 0600 and never overwrite an existing file without --force.
With neither option the env lines go to stdout: redirect them only into a file others cannot read.`)
    .action(keysGenerate)
}
