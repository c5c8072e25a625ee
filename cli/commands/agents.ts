import { Option, type Command } from 'commander'
import { AGENT_STATUSES, AGENT_TYPES, DEPLOYMENT_ENVS } from '../../schemas/agents.js'
import { apiClient, apiCommand, type ApiClient } from '../api-client.js'
import { list, positiveInteger, uuid } from '../arguments.js'
import { note, print, resolveFormat } from '../output.js'

/**
 * `agents list|get|create|suspend|reactivate|decommission` against /api/v1/agents (scopes
 * agents:read / agents:write of the agent the command acts as).
 */

type Agent = Record<string, unknown> & { agentId: string }
interface AgentPage { data: Agent[], nextCursor: string | null }

const AGENT_COLUMNS = ['agentId', 'email', 'status', 'agentType', 'deploymentEnv', 'owner', 'version', 'capabilities']

function printAgent (command: Command, agent: Agent): void {
  print(resolveFormat(command.opts().output), agent)
}

interface ListOptions { status?: string, deploymentEnv?: string, agentType?: string, owner?: string, limit?: number, cursor?: string, all?: boolean }

/** One page, or with `all` every page (followed by cursor). */
export async function listAgents (client: ApiClient, options: ListOptions): Promise<AgentPage> {
  const query = { status: options.status, deploymentEnv: options.deploymentEnv, agentType: options.agentType, owner: options.owner, limit: options.limit }
  let page = await client.call<AgentPage>('GET', '/api/v1/agents', { query: { ...query, cursor: options.cursor } })
  if (options.all !== true) return page
  const data = [...page.data]
  while (page.nextCursor !== null) {
    page = await client.call<AgentPage>('GET', '/api/v1/agents', { query: { ...query, cursor: page.nextCursor } })
    data.push(...page.data)
  }
  return { data, nextCursor: null }
}

async function listAction (options: ListOptions, command: Command): Promise<void> {
  const page = await listAgents(apiClient(command), options)
  print(resolveFormat(command.opts().output), page, { rows: page.data, columns: AGENT_COLUMNS })
  if (page.nextCursor !== null && resolveFormat(command.opts().output) === 'table') note(`more: --cursor ${page.nextCursor} (or --all)`)
}

async function getAction (agentId: string, _options: unknown, command: Command): Promise<void> {
  printAgent(command, await apiClient(command).call<Agent>('GET', `/api/v1/agents/${agentId}`))
}

interface CreateOptions { email: string, agentType: string, agentVersion: string, capabilities: string[], owner: string, deploymentEnv: string }

async function createAction (options: CreateOptions, command: Command): Promise<void> {
  const body = {
    email: options.email,
    agentType: options.agentType,
    version: options.agentVersion,
    capabilities: options.capabilities,
    owner: options.owner,
    deploymentEnv: options.deploymentEnv
  }
  printAgent(command, await apiClient(command).call<Agent>('POST', '/api/v1/agents', { body }))
}

function setStatus (status: 'active' | 'suspended') {
  return async function statusAction (agentId: string, _options: unknown, command: Command): Promise<void> {
    printAgent(command, await apiClient(command).call<Agent>('PATCH', `/api/v1/agents/${agentId}`, { body: { status } }))
  }
}

async function decommissionAction (agentId: string, _options: unknown, command: Command): Promise<void> {
  await apiClient(command).call<null>('DELETE', `/api/v1/agents/${agentId}`)
  print(resolveFormat(command.opts().output), { agentId, status: 'decommissioned' })
}

export function registerAgentCommands (program: Command): void {
  const group = program.command('agents').description('manage agents on a running server (client credentials from AGENTIDP_CLIENT_ID / AGENTIDP_CLIENT_SECRET)')
  apiCommand(group.command('list')
    .description('list agents, newest first (agents:read)')
    .addOption(new Option('--status <status>', 'only agents in this status').choices([...AGENT_STATUSES]))
    .addOption(new Option('--deployment-env <env>', 'only this deployment environment').choices([...DEPLOYMENT_ENVS]))
    .addOption(new Option('--agent-type <type>', 'only this agent type').choices([...AGENT_TYPES]))
    .option('--owner <owner>', 'only this owner')
    .addOption(new Option('--limit <n>', 'page size, 1–100 (default 20)').argParser(positiveInteger))
    .option('--cursor <cursor>', 'the page after this cursor (nextCursor of the previous page)')
    .option('--all', 'follow the cursor to the last page')
    .action(listAction))
  apiCommand(group.command('get')
    .description('show one agent (agents:read, or the agent itself)')
    .argument('<agentId>', 'the agent\'s id', uuid)
    .action(getAction))
  apiCommand(group.command('create')
    .description('register an agent (agents:write)')
    .requiredOption('--email <address>', 'its email (unique, immutable)')
    .addOption(new Option('--agent-type <type>', 'its type').choices([...AGENT_TYPES]).makeOptionMandatory())
    .requiredOption('--agent-version <semver>', 'its version, e.g. 1.0.0')
    .requiredOption('--capabilities <scopes>', 'the scopes it may be granted, comma- or space-separated', list)
    .requiredOption('--owner <owner>', 'its owner label')
    .addOption(new Option('--deployment-env <env>', 'its deployment environment').choices([...DEPLOYMENT_ENVS]).makeOptionMandatory())
    .action(createAction))
  apiCommand(group.command('suspend')
    .description('suspend an agent: its tokens stop working at once (agents:write)')
    .argument('<agentId>', 'the agent\'s id', uuid)
    .action(setStatus('suspended')))
  apiCommand(group.command('reactivate')
    .description('reactivate a suspended agent; tokens issued before the suspension stay invalid (agents:write)')
    .argument('<agentId>', 'the agent\'s id', uuid)
    .action(setStatus('active')))
  apiCommand(group.command('decommission')
    .description('decommission an agent for good: its credentials and tokens are revoked (agents:write)')
    .argument('<agentId>', 'the agent\'s id', uuid)
    .action(decommissionAction))
}
