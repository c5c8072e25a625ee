import type { Command } from 'commander'
import { apiClient, apiCommand } from '../api-client.js'
import { usageError } from '../exit-codes.js'
import { print, resolveFormat } from '../output.js'

/**
 * `token get|introspect|revoke`: the OAuth endpoints with the command's client credentials. A
 * token to introspect or revoke is an argument, or read from stdin with `-` (an argument shows in
 * the process list).
 */

async function readStdin (): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8').trim()
}

async function tokenArgument (token: string | undefined): Promise<string> {
  if ((token === undefined || token === '-') && process.stdin.isTTY === true) throw usageError('a token is required: as the argument, or piped on stdin')
  const value = token === undefined || token === '-' ? await readStdin() : token
  if (value === '') throw usageError('a token is required: as the argument, or on stdin with `-`')
  return value
}

async function getAction (options: { scope?: string, resource?: string, accessTokenOnly?: boolean }, command: Command): Promise<void> {
  const response = await apiClient(command).token({ scope: options.scope, resource: options.resource })
  if (options.accessTokenOnly === true) process.stdout.write(`${response.access_token}\n`)
  else print(resolveFormat(command.opts().output), response)
}

async function introspectAction (token: string | undefined, _options: unknown, command: Command): Promise<void> {
  const client = apiClient(command)
  const result = await client.oauth<Record<string, unknown>>('/api/v1/token/introspect', { token: await tokenArgument(token) })
  print(resolveFormat(command.opts().output), result)
}

async function revokeAction (token: string | undefined, _options: unknown, command: Command): Promise<void> {
  const client = apiClient(command)
  await client.oauth<null>('/api/v1/token/revoke', { token: await tokenArgument(token) })
  print(resolveFormat(command.opts().output), { revoked: true })
}

export function registerTokenCommands (program: Command): void {
  const group = program.command('token').description('obtain, introspect and revoke access tokens on a running server')
  apiCommand(group.command('get')
    .description('obtain an access token with the client credentials (client_credentials grant)')
    .option('--scope <scopes>', 'space-separated scopes (default: all of the agent\'s capabilities)')
    .option('--resource <uri>', 'the resource (RFC 8707) the token is for; becomes its aud')
    .option('--access-token-only', 'print only the access token (for TOKEN=$(…))')
    .action(getAction))
  apiCommand(group.command('introspect')
    .description('introspect a token (RFC 7662): any agent may introspect its own, tokens:read any')
    .argument('[token]', 'the token, or - (the default) to read it from stdin')
    .action(introspectAction))
  apiCommand(group.command('revoke')
    .description('revoke a token (RFC 7009): the token\'s own client, or a holder of agents:write')
    .argument('[token]', 'the token, or - (the default) to read it from stdin')
    .action(revokeAction))
}
