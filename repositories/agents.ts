import { randomUUID } from 'node:crypto'
import type { Queryable } from './transaction.js'
import { exactTimestamp } from './columns.js'
import { federatedSubjectsSql } from './agent-keys.js'
import { conflict } from '../lib/errors.js'
import { decodeCursor, encodeCursor } from '../lib/cursor.js'
import type { Agent, CreateAgent, ListAgentsQuery, UpdateAgent } from '../schemas/agents.js'

/** All SQL about agents. Rows become the API's camelCase shape in toAgent and nowhere else. */

interface AgentRow {
  agent_id: string
  email: string
  agent_type: Agent['agentType']
  version: string
  capabilities: string[]
  owner: string
  deployment_env: Agent['deploymentEnv']
  status: Agent['status']
  may_act: string[]
  auth_methods: Agent['authMethods']
  federated_subjects: Agent['federatedSubjects']
  audiences: string[]
  dpop_bound: boolean
  client_id_url: string | null
  created_at: Date
  updated_at: Date
  created_at_exact: string
}

const COLUMNS = `agent_id, email, agent_type, version, capabilities, owner, deployment_env, status, may_act,
  auth_methods, ${federatedSubjectsSql('agents')} AS federated_subjects, audiences, dpop_bound, client_id_url, created_at, updated_at, ${exactTimestamp('created_at')} AS created_at_exact`

function toAgent (row: AgentRow): Agent {
  return {
    agentId: row.agent_id,
    email: row.email,
    agentType: row.agent_type,
    version: row.version,
    capabilities: row.capabilities,
    owner: row.owner,
    deploymentEnv: row.deployment_env,
    status: row.status,
    mayAct: row.may_act,
    authMethods: row.auth_methods,
    federatedSubjects: row.federated_subjects,
    audiences: row.audiences,
    dpopBound: row.dpop_bound,
    clientIdUrl: row.client_id_url,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString()
  }
}

const UNIQUE_VIOLATION = '23505'

export async function insertAgent (db: Queryable, input: CreateAgent): Promise<Agent> {
  try {
    const { rows } = await db.query<AgentRow>(
      `INSERT INTO agents (agent_id, email, agent_type, version, capabilities, owner, deployment_env, auth_methods, audiences, dpop_bound)
       VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, '{client_secret_basic,client_secret_post,private_key_jwt}'::text[]), $9, $10) RETURNING ${COLUMNS}`,
      [randomUUID(), input.email, input.agentType, input.version, input.capabilities, input.owner, input.deploymentEnv, input.authMethods ?? null,
        input.audiences ?? [], input.dpopBound ?? false]
    )
    return toAgent(rows[0])
  } catch (error) {
    if ((error as { code?: string }).code === UNIQUE_VIOLATION) {
      throw conflict('AGENT_ALREADY_EXISTS', 'an agent with this email already exists')
    }
    throw error
  }
}

/** The agent that stands for a client identified by its metadata document (see plugins/client-metadata.ts). */
export interface ClientMetadataAgent { agentId: string, clientIdUrl: string, email: string, owner: string, capabilities: string[] }

/**
 * Creates the agent of a client metadata document (agentType custom, version 0.0.0, production,
 * private_key_jwt only) unless it exists: true when this call created it (false too when another
 * agent holds its email or URL: the caller finds no row of its own then).
 */
export async function insertClientMetadataAgent (db: Queryable, agent: ClientMetadataAgent): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO agents (agent_id, email, agent_type, version, capabilities, owner, deployment_env, auth_methods, client_id_url)
     VALUES ($1, $2, 'custom', '0.0.0', $3, $4, 'production', '{private_key_jwt}', $5)
     ON CONFLICT DO NOTHING`,
    [agent.agentId, agent.email, agent.capabilities, agent.owner, agent.clientIdUrl])
  return rowCount === 1
}

/**
 * Serialises agent creation per owner for the rest of the transaction, so two concurrent creates
 * can't both see room under MAX_AGENTS_PER_OWNER.
 */
export async function lockOwner (db: Queryable, owner: string): Promise<void> {
  await db.query("SELECT pg_advisory_xact_lock(hashtext('agentidp:owner:' || $1))", [owner])
}

export async function countAgentsOfOwner (db: Queryable, owner: string): Promise<number> {
  const { rows } = await db.query<{ count: number }>(
    "SELECT count(*)::int AS count FROM agents WHERE owner = $1 AND status <> 'decommissioned'", [owner])
  return rows[0].count
}

export async function findAgent (db: Queryable, agentId: string, options: { forUpdate?: boolean } = {}): Promise<Agent | null> {
  // named: prepared once per connection, as every authenticated GET /agents/:agentId reads it
  const { rows } = await db.query<AgentRow>({
    name: options.forUpdate === true ? 'find-agent-for-update' : 'find-agent',
    text: `SELECT ${COLUMNS} FROM agents WHERE agent_id = $1${options.forUpdate === true ? ' FOR UPDATE' : ''}`,
    values: [agentId]
  })
  return rows.length === 0 ? null : toAgent(rows[0])
}

export interface AgentPage { data: Agent[], nextCursor: string | null }

export async function listAgents (db: Queryable, query: ListAgentsQuery): Promise<AgentPage> {
  const conditions: string[] = []
  const values: unknown[] = []
  const bind = (value: unknown) => { values.push(value); return `$${values.length}` }
  if (query.status !== undefined) conditions.push(`status = ${bind(query.status)}`)
  if (query.deploymentEnv !== undefined) conditions.push(`deployment_env = ${bind(query.deploymentEnv)}`)
  if (query.agentType !== undefined) conditions.push(`agent_type = ${bind(query.agentType)}`)
  if (query.owner !== undefined) conditions.push(`owner = ${bind(query.owner)}`)
  if (query.cursor !== undefined) {
    const after = decodeCursor(query.cursor)
    conditions.push(`(created_at, agent_id) < (${bind(after.createdAt)}::timestamptz, ${bind(after.id)}::uuid)`)
  }
  const where = conditions.length === 0 ? '' : `WHERE ${conditions.join(' AND ')}`
  // one row more than asked tells whether another page exists
  const { rows } = await db.query<AgentRow>(
    `SELECT ${COLUMNS} FROM agents ${where} ORDER BY created_at DESC, agent_id DESC LIMIT ${bind(query.limit + 1)}`, values)
  const page = rows.slice(0, query.limit)
  const last = page[page.length - 1]
  return {
    data: page.map(toAgent),
    nextCursor: rows.length > query.limit ? encodeCursor({ createdAt: last.created_at_exact, id: last.agent_id }) : null
  }
}

/** Applies the non-status fields of a PATCH. */
export async function updateAgentFields (db: Queryable, agentId: string, changes: Omit<UpdateAgent, 'status' | 'federatedSubjects'>): Promise<void> {
  const assignments: string[] = []
  const values: unknown[] = [agentId]
  const set = (column: string, value: unknown) => { values.push(value); assignments.push(`${column} = $${values.length}`) }
  if (changes.capabilities !== undefined) set('capabilities', changes.capabilities)
  if (changes.version !== undefined) set('version', changes.version)
  if (changes.owner !== undefined) set('owner', changes.owner)
  if (changes.deploymentEnv !== undefined) set('deployment_env', changes.deploymentEnv)
  if (changes.agentType !== undefined) set('agent_type', changes.agentType)
  if (changes.mayAct !== undefined) set('may_act', changes.mayAct)
  if (changes.authMethods !== undefined) set('auth_methods', changes.authMethods)
  if (changes.audiences !== undefined) set('audiences', changes.audiences)
  if (changes.dpopBound !== undefined) set('dpop_bound', changes.dpopBound)
  if (assignments.length === 0) return
  await db.query(`UPDATE agents SET ${assignments.join(', ')}, updated_at = now() WHERE agent_id = $1`, values)
}

/**
 * Changes the status. Leaving `active` also moves the agent's "valid after" instant to now, which
 * invalidates every token issued before; reactivation leaves it there, so old tokens stay dead.
 * Returns the instant as epoch milliseconds.
 *
 * "Now" is the clock as the row is written (`clock_timestamp()`), not the transaction's start
 * (`now()`): the caller holds the agent's row lock by then, so every issuance that could still
 * commit without seeing this change (repositories/tokens.ts takes a share lock on the row) has
 * committed, and its token is older than the instant. With the transaction's start, a token issued
 * while the transaction made its way to the lock, in a later second, survived a reactivation.
 */
export async function setAgentStatus (db: Queryable, agentId: string, status: Agent['status']): Promise<number> {
  const { rows } = await db.query<{ valid_after_ms: string }>(
    `UPDATE agents SET status = $2::agent_status,
       tokens_valid_after = CASE WHEN $2::agent_status = 'active' THEN tokens_valid_after ELSE clock_timestamp() END,
       updated_at = now()
     WHERE agent_id = $1
     RETURNING (extract(epoch FROM tokens_valid_after) * 1000)::bigint AS valid_after_ms`, [agentId, status])
  return Number(rows[0].valid_after_ms)
}

/**
 * Serialises every change that could leave a scope without a usable holder (suspension,
 * decommissioning, narrowing capabilities, revoking a holder's credential) for the rest of the
 * transaction.
 */
export async function lockScopeHolders (db: Queryable, scope: string): Promise<void> {
  await db.query("SELECT pg_advisory_xact_lock(hashtext('agentidp:holders:' || $1))", [scope])
}

/**
 * Active agents other than `exceptAgentId` that hold `scope` and can use it: they have at least one
 * credential that is active, not revoked and not expired (an agent without one can obtain no token).
 */
export async function countOtherUsableHolders (db: Queryable, scope: string, exceptAgentId: string): Promise<number> {
  const { rows } = await db.query<{ count: number }>(
    `SELECT count(*)::int AS count FROM agents a
     WHERE a.status = 'active' AND $1 = ANY (a.capabilities) AND a.agent_id <> $2
       AND EXISTS (SELECT 1 FROM credentials c
                   WHERE c.client_id = a.agent_id AND c.status = 'active' AND (c.expires_at IS NULL OR c.expires_at > now()))`,
    [scope, exceptAgentId])
  return rows[0].count
}

export async function countAgents (db: Queryable): Promise<number> {
  const { rows } = await db.query<{ count: number }>('SELECT count(*)::int AS count FROM agents')
  return rows[0].count
}

export async function agentExists (db: Queryable, agentId: string): Promise<boolean> {
  const { rowCount } = await db.query('SELECT 1 FROM agents WHERE agent_id = $1', [agentId])
  return rowCount === 1
}

/** Who may act for each of `agentIds` (token exchange), by agent id; an agent that does not exist is absent. */
export async function findMayAct (db: Queryable, agentIds: string[]): Promise<Map<string, string[]>> {
  const { rows } = await db.query<{ agent_id: string, may_act: string[] }>(
    'SELECT agent_id, may_act FROM agents WHERE agent_id = ANY ($1::uuid[])', [agentIds])
  return new Map(rows.map((row) => [row.agent_id, row.may_act]))
}
