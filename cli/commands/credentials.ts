import type { Command } from 'commander'
import { apiClient, apiCommand } from '../api-client.js'
import { instant, uuid } from '../arguments.js'
import { openSecretFile } from '../files.js'
import { note, print, resolveFormat } from '../output.js'

/**
 * `credentials generate|list|rotate|revoke` against /api/v1/agents/:agentId/credentials
 * (credentials:read / credentials:write, or the agent itself). A new client secret goes to stdout
 * as part of the credential — or, with `--output-file F`, into F (mode 0600) and not to stdout.
 */

type Credential = Record<string, unknown> & { credentialId: string }
type IssuedCredential = Credential & { clientSecret: string }

const CREDENTIAL_COLUMNS = ['credentialId', 'status', 'createdAt', 'expiresAt', 'revokedAt']

interface IssueOptions { outputFile?: string, force?: boolean }

/** Prints a credential that carries its new secret, or files the secret and prints the rest. */
async function printIssued (command: Command, issue: () => Promise<IssuedCredential>): Promise<void> {
  const options = command.opts<IssueOptions & { output?: string }>()
  const format = resolveFormat(options.output)
  if (options.outputFile === undefined) {
    print(format, await issue())
    return
  }
  const file = await openSecretFile(options.outputFile, options)
  let issued: IssuedCredential
  try {
    issued = await issue()
  } catch (error) {
    await file.discard()
    throw error
  }
  await file.write(JSON.stringify(issued) + '\n')
  const { clientSecret: _secret, ...rest } = issued
  print(format, { ...rest, credentialsFile: file.path })
  note(`the client secret is in ${file.path} (mode 0600); it is not printed`)
}

async function generateAction (agentId: string, options: { expiresAt?: string }, command: Command): Promise<void> {
  const client = apiClient(command)
  await printIssued(command, () => client.call<IssuedCredential>('POST', `/api/v1/agents/${agentId}/credentials`,
    options.expiresAt === undefined ? {} : { body: { expiresAt: options.expiresAt } }))
}

async function listAction (agentId: string, _options: unknown, command: Command): Promise<void> {
  const page = await apiClient(command).call<{ data: Credential[] }>('GET', `/api/v1/agents/${agentId}/credentials`)
  print(resolveFormat(command.opts().output), page, { rows: page.data, columns: CREDENTIAL_COLUMNS })
}

async function rotateAction (agentId: string, credentialId: string, _options: unknown, command: Command): Promise<void> {
  const client = apiClient(command)
  await printIssued(command, () => client.call<IssuedCredential>('POST', `/api/v1/agents/${agentId}/credentials/${credentialId}/rotate`))
}

async function revokeAction (agentId: string, credentialId: string, _options: unknown, command: Command): Promise<void> {
  await apiClient(command).call<null>('DELETE', `/api/v1/agents/${agentId}/credentials/${credentialId}`)
  print(resolveFormat(command.opts().output), { agentId, credentialId, status: 'revoked' })
}

const secretFileOptions = (command: Command) => command
  .option('--output-file <file>', 'write the credential with its secret to this file (mode 0600) instead of stdout')
  .option('--force', 'with --output-file: replace a file that exists')

export function registerCredentialCommands (program: Command): void {
  const group = program.command('credentials').description('manage an agent\'s client credentials on a running server')
  apiCommand(secretFileOptions(group.command('generate')
    .description('generate a credential; its secret is shown once (credentials:write, or the agent itself)')
    .argument('<agentId>', 'the agent\'s id', uuid)
    .option('--expires-at <instant>', 'when it expires (a future ISO 8601 instant); default never', instant)
    .action(generateAction)))
  apiCommand(group.command('list')
    .description('list an agent\'s credentials, never their secrets (credentials:read, or the agent itself)')
    .argument('<agentId>', 'the agent\'s id', uuid)
    .action(listAction))
  apiCommand(secretFileOptions(group.command('rotate')
    .description('give a credential a new secret; the old one stops at once, tokens already issued stay valid (credentials:write, or the agent itself)')
    .argument('<agentId>', 'the agent\'s id', uuid)
    .argument('<credentialId>', 'the credential\'s id', uuid)
    .action(rotateAction)))
  apiCommand(group.command('revoke')
    .description('revoke a credential: its tokens stop working at once (credentials:write, or the agent itself)')
    .argument('<agentId>', 'the agent\'s id', uuid)
    .argument('<credentialId>', 'the credential\'s id', uuid)
    .action(revokeAction))
}
