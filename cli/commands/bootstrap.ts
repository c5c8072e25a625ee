import { Option, type Command } from 'commander'
import { readEnvironment } from '../../plugins/config.js'
import { loadPolicyData } from '../../services/policy.js'
import { bootstrapAdmin } from '../../services/bootstrap.js'
import { ProblemError } from '../../lib/errors.js'
import { bundledPolicyDir } from '../../lib/paths.js'
import { email } from '../arguments.js'
import { CliError, ExitCode } from '../exit-codes.js'
import { openSecretFile, type SecretFile } from '../files.js'
import { note } from '../output.js'
import { asCliError, databaseUrlFromEnvironment, withPool } from '../startup.js'

/**
 * `bootstrap --email E`: the first admin agent, with every platform scope and one credential.
 * stdout is exactly one JSON line {"agentId","clientId","clientSecret"} — or, with
 * `--output-file F`, that line goes into F (mode 0600, created before the agent is) and stdout's
 * line says where: {"agentId","clientId","credentialsFile"}. Nothing else on stdout.
 */

async function platformScopes (): Promise<string[]> {
  const env = readEnvironment()
  // the platform scopes are the policy data's: the same POLICY_DIR as the server's
  const directory = env.POLICY_DIR === undefined || env.POLICY_DIR === '' ? bundledPolicyDir : env.POLICY_DIR
  try {
    return (await loadPolicyData(directory)).platformScopes
  } catch (error) {
    throw asCliError(error)
  }
}

export async function bootstrap (options: { email: string, outputFile?: string, force?: boolean }): Promise<void> {
  const databaseUrl = databaseUrlFromEnvironment()
  const scopes = await platformScopes()
  const file: SecretFile | undefined = options.outputFile === undefined ? undefined : await openSecretFile(options.outputFile, options)
  let admin
  try {
    admin = await withPool(databaseUrl, (pool) => bootstrapAdmin(pool, options.email, scopes))
  } catch (error) {
    await file?.discard()
    if (error instanceof ProblemError && error.code === 'AGENT_ALREADY_EXISTS') {
      throw new CliError(`bootstrap: an agent with email ${options.email} already exists; nothing was created`, ExitCode.CONFLICT)
    }
    throw asCliError(error)
  }
  if (file === undefined) {
    process.stdout.write(JSON.stringify(admin) + '\n')
    return
  }
  await file.write(JSON.stringify(admin) + '\n')
  process.stdout.write(JSON.stringify({ agentId: admin.agentId, clientId: admin.clientId, credentialsFile: file.path }) + '\n')
  note(`bootstrap: the admin's client secret is in ${file.path} (mode 0600); it is not printed`)
}

export function registerBootstrapCommand (program: Command): void {
  program.command('bootstrap')
    .description('create an admin agent with every platform scope and one credential (DATABASE_URL)')
    .addOption(new Option('--email <address>', 'the admin agent\'s email').argParser(email).makeOptionMandatory())
    .option('--output-file <file>', 'write the credentials JSON line (with the secret) to this file, mode 0600, instead of stdout')
    .option('--force', 'with --output-file: replace a file that exists')
    .addHelpText('after', `
stdout is one JSON line {"agentId","clientId","clientSecret"}; with --output-file that line goes into
the file and stdout says where: {"agentId","clientId","credentialsFile"}. An email that exists: exit ${ExitCode.CONFLICT}.`)
    .action(bootstrap)
}
