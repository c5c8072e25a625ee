import { Command, CommanderError } from 'commander'
import { packageVersion } from './version.js'
import { ExitCode } from './exit-codes.js'
import { asCliError } from './startup.js'
import { registerAgentCommands } from './commands/agents.js'
import { registerAuditCommands, registerLegacyAuditPrune } from './commands/audit.js'
import { registerBootstrapCommand } from './commands/bootstrap.js'
import { registerCredentialCommands } from './commands/credentials.js'
import { registerKeysCommands } from './commands/keys.js'
import { registerMigrateCommands } from './commands/migrate.js'
import { registerServeCommands } from './commands/serve.js'
import { registerTokenCommands } from './commands/token.js'

/**
 * The `agentidp` command line (commander): the operator commands that run on the database and
 * the server process, and the API commands that talk to a running server. Every command and
 * subcommand has --help; exit codes are cli/exit-codes.ts's, also for commander's own errors
 * (usage: 2). `node dist/server.js` runs the same program with `serve` as its default command.
 */

const EXIT_CODES_HELP = `
Exit codes: ${ExitCode.OK} ok, ${ExitCode.FAILURE} failure (server or database error, unreachable, bad configuration),
${ExitCode.USAGE} usage error, ${ExitCode.REFUSED} refused (400/401/403/429, a file that exists), ${ExitCode.NOT_FOUND} not found (404),
${ExitCode.CONFLICT} conflict (409, already exists/revoked/decommissioned), ${ExitCode.CHECK_FAILED} a check said no (audit verify, migrate status --check).

API commands read AGENTIDP_URL (default http://localhost:3000), AGENTIDP_CLIENT_ID and AGENTIDP_CLIENT_SECRET.
Database commands read DATABASE_URL (and a .env file in the working directory).`

/** exitOverride and the same output everywhere: commander reports, we choose the code. */
function configureAll (command: Command): void {
  command.exitOverride()
  command.showHelpAfterError('(add --help for usage)')
  for (const sub of command.commands) configureAll(sub)
}

export function buildProgram (): Command {
  const program = new Command('agentidp')
    .description('AgentIdP, an OAuth 2.0 identity provider for AI agents: the server, its database, and a client for its API')
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    .addHelpCommand(false)
    .addHelpText('after', EXIT_CODES_HELP)
  registerServeCommands(program)
  registerMigrateCommands(program)
  registerKeysCommands(program)
  registerBootstrapCommand(program)
  registerAuditCommands(program)
  registerAgentCommands(program)
  registerCredentialCommands(program)
  registerTokenCommands(program)
  registerLegacyAuditPrune(program)
  configureAll(program)
  return program
}

/** commander's outcome as our exit code: help and version are 0, any complaint about the command line 2. */
function exitCodeOf (error: CommanderError): number {
  if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return ExitCode.OK
  return ExitCode.USAGE
}

/**
 * Runs the command line. Resolves when the command is done; a server command (serve, dev) leaves
 * the process running. A failure is one line on stderr and the process exits with its code.
 */
export async function runCli (args: string[]): Promise<void> {
  // `agentidp audit tail --follow | head`: a reader that has had enough is not an error
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(process.exitCode ?? ExitCode.OK)
    throw error
  })
  const program = buildProgram()
  try {
    await program.parseAsync(args, { from: 'user' })
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exitCode = exitCodeOf(error)
      return
    }
    const failure = asCliError(error)
    process.stderr.write(`${failure.message}\n`)
    // at once: a start that failed half-way may hold connections open (stdout and stderr are
    // synchronous for files and pipes, so nothing written is lost)
    process.exit(failure.exitCode)
  }
}
