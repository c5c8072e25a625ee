import { generateKeyPair } from 'node:crypto'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Option, type Command } from 'commander'
import { createKeyRing } from '../../plugins/keys.js'
import { usageError } from '../exit-codes.js'
import { writeSecretFile } from '../files.js'
import { note, outputOption, print, resolveFormat } from '../output.js'

/**
 * `keys generate`: an RSA-2048 signing pair in the form the server reads (plugins/config.ts):
 * JWT_PRIVATE_KEY (PKCS#8 PEM) and JWT_PUBLIC_KEY (SPKI PEM), as two PEM files or as env lines
 * with literal `\n` (one line each: a `.env` file, `docker run --env-file`). Files are 0600.
 */

const generatePair = promisify(generateKeyPair)
const MODULUS_BITS = 2048

export interface PemPair { privateKey: string, publicKey: string }

export async function generateSigningKeys (): Promise<PemPair> {
  const { privateKey, publicKey } = await generatePair('rsa', { modulusLength: MODULUS_BITS })
  return {
    privateKey: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString()
  }
}

/** One `NAME=value` line per key, newlines written as `\n`: the server turns them back. */
export function envLines (pair: PemPair): string {
  const oneLine = (pem: string) => pem.trim().replace(/\r?\n/g, '\\n')
  return `JWT_PRIVATE_KEY=${oneLine(pair.privateKey)}\nJWT_PUBLIC_KEY=${oneLine(pair.publicKey)}\n`
}

interface GenerateOptions { format: 'env' | 'pem', outDir?: string, outputFile?: string, force?: boolean, output?: string }

export async function keysGenerate (options: GenerateOptions): Promise<void> {
  if (options.format === 'pem' && options.outputFile !== undefined) throw usageError('--output-file is for --format env; --format pem writes into --out-dir')
  if (options.format === 'env' && options.outDir !== undefined) throw usageError('--out-dir is for --format pem; --format env writes to --output-file or stdout')
  const pair = await generateSigningKeys()
  // the key id the JWKS will publish for it (RFC 7638 thumbprint): a check for the operator
  const { currentKid: kid } = await createKeyRing(pair.privateKey)
  if (options.format === 'pem') {
    const directory = options.outDir ?? '.'
    await mkdir(directory, { recursive: true, mode: 0o700 })
    const privateKeyFile = await writeSecretFile(join(directory, 'jwt-private.pem'), pair.privateKey, options)
    const publicKeyFile = await writeSecretFile(join(directory, 'jwt-public.pem'), pair.publicKey, options)
    note(`keys: RSA-${MODULUS_BITS} pair written (mode 0600); set JWT_PRIVATE_KEY and JWT_PUBLIC_KEY to their contents`)
    print(resolveFormat(options.output), { privateKeyFile, publicKeyFile, kid })
    return
  }
  if (options.outputFile !== undefined) {
    const file = await writeSecretFile(options.outputFile, envLines(pair), options)
    note(`keys: RSA-${MODULUS_BITS} pair written to ${file} (mode 0600) as JWT_PRIVATE_KEY and JWT_PUBLIC_KEY lines`)
    print(resolveFormat(options.output), { envFile: file, kid })
    return
  }
  process.stdout.write(envLines(pair))
  note(`keys: RSA-${MODULUS_BITS} pair, kid ${kid}`)
}

export function registerKeysCommands (program: Command): void {
  const group = program.command('keys').description('signing keys for access tokens')
  group.command('generate')
    .description('generate an RSA-2048 signing pair for JWT_PRIVATE_KEY / JWT_PUBLIC_KEY')
    .addOption(new Option('--format <format>', 'env: JWT_PRIVATE_KEY=… and JWT_PUBLIC_KEY=… lines (literal \\n); pem: two PEM files')
      .choices(['env', 'pem']).default('env'))
    .option('--out-dir <dir>', 'with --format pem: where jwt-private.pem and jwt-public.pem go (default: the current directory)')
    .option('--output-file <file>', 'with --format env: write the lines to this file (mode 0600) instead of stdout')
    .option('--force', 'replace files that exist')
    .addOption(outputOption())
    .addHelpText('after', `
Examples:
  agentidp keys generate --output-file .env.keys       # two lines for a .env file or docker --env-file
  agentidp keys generate --format pem --out-dir keys/  # keys/jwt-private.pem, keys/jwt-public.pem
Files are created with mode 0600 and never overwrite an existing file without --force.
With neither option the env lines go to stdout: redirect them only into a file others cannot read.`)
    .action(keysGenerate)
}
