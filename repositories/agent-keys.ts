import { randomUUID } from 'node:crypto'
import type { Queryable } from './transaction.js'

/**
 * SQL of an agent's secretless authenticators: its registered public keys (inline JWKS or a
 * jwks_uri), its federated subjects, and the methods it accepts. Each key, jwks_uri and federated
 * subject is a `credentials` row of its own kind (migration 011), so what it authenticates is
 * recorded, checked and revoked exactly like what a secret authenticates.
 */

export const AUTH_METHODS = ['client_secret_basic', 'client_secret_post', 'private_key_jwt'] as const
export type AuthMethod = typeof AUTH_METHODS[number]

export interface FederatedSubject { issuer: string, subject: string, conditions?: Record<string, string | number | boolean> }

/** An agent as assertion-based authentication needs it, with its usable key rows. */
export interface KeyClientRecord {
  agentId: string
  agentStatus: 'active' | 'suspended' | 'decommissioned'
  capabilities: string[]
  validAfterMs: number
  authMethods: AuthMethod[]
  dpopBound: boolean
  /** the agent's audiences (RFC 8707): what a token request's `resource` may name besides the issuer */
  audiences: string[]
  /** the URL of the client's metadata document, for an agent that stands for one (else null) */
  clientIdUrl: string | null
  jwks: { keys: object[] } | null
  jwksUri: string | null
  /** active key rows: thumbprint → credential id (inline keys) */
  keyCredentials: Map<string, string>
  /** the active row of the jwks_uri, if any */
  jwksUriCredential: string | null
}

export async function findKeyClient (db: Queryable, agentId: string, options: { forUpdate?: boolean } = {}): Promise<KeyClientRecord | null> {
  const { rows } = await db.query<{
    agent_id: string, status: KeyClientRecord['agentStatus'], capabilities: string[], valid_after_ms: string,
    auth_methods: AuthMethod[], dpop_bound: boolean, audiences: string[], client_id_url: string | null, jwks: KeyClientRecord['jwks'], jwks_uri: string | null,
    key_rows: Array<{ credential_id: string, kind: string, key_thumbprint: string | null, jwks_uri: string | null }>
  }>({
    name: options.forUpdate === true ? 'find-key-client-for-update' : 'find-key-client',
    text: `SELECT a.agent_id, a.status, a.capabilities, (extract(epoch FROM a.tokens_valid_after) * 1000)::bigint AS valid_after_ms,
       a.auth_methods, a.dpop_bound, a.audiences, a.client_id_url, a.jwks, a.jwks_uri,
       coalesce((SELECT jsonb_agg(jsonb_build_object('credential_id', c.credential_id, 'kind', c.kind, 'key_thumbprint', c.key_thumbprint, 'jwks_uri', c.jwks_uri))
                 FROM credentials c WHERE c.client_id = a.agent_id AND c.kind IN ('key', 'jwks_uri') AND c.status = 'active'), '[]'::jsonb) AS key_rows
     FROM agents a WHERE a.agent_id = $1${options.forUpdate === true ? ' FOR UPDATE OF a' : ''}`,
    values: [agentId]
  })
  if (rows.length === 0) return null
  const row = rows[0]
  const keyRows = row.key_rows
  return {
    agentId: row.agent_id,
    agentStatus: row.status,
    capabilities: row.capabilities,
    validAfterMs: Number(row.valid_after_ms),
    authMethods: row.auth_methods,
    dpopBound: row.dpop_bound,
    audiences: row.audiences,
    clientIdUrl: row.client_id_url,
    jwks: row.jwks,
    jwksUri: row.jwks_uri,
    keyCredentials: new Map(keyRows.filter((key) => key.kind === 'key').map((key) => [key.key_thumbprint as string, key.credential_id])),
    jwksUriCredential: keyRows.find((key) => key.kind === 'jwks_uri' && key.jwks_uri === row.jwks_uri)?.credential_id ?? null
  }
}

export interface AgentKeys { jwks: { keys: object[] } | null, jwksUri: string | null, updatedAt: string }

export async function findAgentKeys (db: Queryable, agentId: string): Promise<AgentKeys | null> {
  const { rows } = await db.query<{ jwks: AgentKeys['jwks'], jwks_uri: string | null, updated_at: Date }>(
    'SELECT jwks, jwks_uri, updated_at FROM agents WHERE agent_id = $1', [agentId])
  return rows.length === 0 ? null : { jwks: rows[0].jwks, jwksUri: rows[0].jwks_uri, updatedAt: rows[0].updated_at.toISOString() }
}

export interface KeysChange { added: string[], removed: string[] }

/**
 * Replaces the agent's keys (under the caller's lock on the agent): a key that stays keeps its row
 * (tokens it obtained stay valid), a key that goes has its row revoked (its tokens stop at once),
 * a new key gets a new row. The same for a jwks_uri, compared as a whole string. Returns the
 * credential ids added and revoked.
 */
export async function replaceAgentKeys (db: Queryable, agentId: string, keys: { jwks: { keys: object[] } | null, jwksUri: string | null, thumbprints: string[] }): Promise<KeysChange> {
  await db.query('UPDATE agents SET jwks = $2, jwks_uri = $3, updated_at = now() WHERE agent_id = $1',
    [agentId, keys.jwks === null ? null : JSON.stringify(keys.jwks), keys.jwksUri])
  const { rows: revoked } = await db.query<{ credential_id: string }>(
    `UPDATE credentials SET status = 'revoked', revoked_at = now(), updated_at = now()
     WHERE client_id = $1 AND status = 'active'
       AND ((kind = 'key' AND NOT (key_thumbprint = ANY ($2::text[])))
         OR (kind = 'jwks_uri' AND jwks_uri IS DISTINCT FROM $3))
     RETURNING credential_id`, [agentId, keys.thumbprints, keys.jwksUri])
  const { rows: kept } = await db.query<{ key_thumbprint: string | null, jwks_uri: string | null }>(
    `SELECT key_thumbprint, jwks_uri FROM credentials
     WHERE client_id = $1 AND status = 'active' AND kind IN ('key', 'jwks_uri')`, [agentId])
  const added: string[] = []
  for (const thumbprint of keys.thumbprints) {
    if (kept.some((row) => row.key_thumbprint === thumbprint)) continue
    const credentialId = randomUUID()
    await db.query("INSERT INTO credentials (credential_id, client_id, kind, key_thumbprint) VALUES ($1, $2, 'key', $3)", [credentialId, agentId, thumbprint])
    added.push(credentialId)
  }
  if (keys.jwksUri !== null && !kept.some((row) => row.jwks_uri === keys.jwksUri)) {
    const credentialId = randomUUID()
    await db.query("INSERT INTO credentials (credential_id, client_id, kind, jwks_uri) VALUES ($1, $2, 'jwks_uri', $3)", [credentialId, agentId, keys.jwksUri])
    added.push(credentialId)
  }
  return { added, removed: revoked.map((row) => row.credential_id) }
}

/** A federated subject row matching an assertion's issuer and subject. */
export interface FederatedMatch { credentialId: string, agentId: string, conditions: FederatedSubject['conditions'] | null }

export async function findFederatedMatches (db: Queryable, issuer: string, subject: string): Promise<FederatedMatch[]> {
  const { rows } = await db.query<{ credential_id: string, client_id: string, federated_conditions: FederatedMatch['conditions'] }>({
    name: 'find-federated-matches',
    text: `SELECT credential_id, client_id, federated_conditions FROM credentials
     WHERE kind = 'federated' AND status = 'active' AND federated_issuer = $1 AND federated_subject = $2
     ORDER BY created_at LIMIT 20`,
    values: [issuer, subject]
  })
  return rows.map((row) => ({ credentialId: row.credential_id, agentId: row.client_id, conditions: row.federated_conditions }))
}

/** The agent's federated subjects as the API shows them (active rows). */
export function federatedSubjectsSql (agentAlias: string): string {
  return `coalesce((SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object('issuer', f.federated_issuer, 'subject', f.federated_subject, 'conditions', f.federated_conditions)) ORDER BY f.created_at, f.credential_id)
    FROM credentials f WHERE f.client_id = ${agentAlias}.agent_id AND f.kind = 'federated' AND f.status = 'active'), '[]'::jsonb)`
}

/**
 * Replaces the agent's federated subjects (under the caller's lock on the agent): an entry that
 * stays identical (issuer, subject and conditions) keeps its row; any other is revoked, so tokens
 * it obtained stop at once; a new one gets a row.
 */
export async function replaceFederatedSubjects (db: Queryable, agentId: string, subjects: FederatedSubject[]): Promise<KeysChange> {
  const wanted = subjects.map((entry) => ({ issuer: entry.issuer, subject: entry.subject, conditions: entry.conditions ?? null }))
  const { rows: revoked } = await db.query<{ credential_id: string }>(
    `UPDATE credentials c SET status = 'revoked', revoked_at = now(), updated_at = now()
     WHERE c.client_id = $1 AND c.kind = 'federated' AND c.status = 'active'
       AND NOT EXISTS (SELECT 1 FROM jsonb_to_recordset($2::jsonb) AS w (issuer text, subject text, conditions jsonb)
                       WHERE w.issuer = c.federated_issuer AND w.subject = c.federated_subject
                         AND w.conditions IS NOT DISTINCT FROM c.federated_conditions)
     RETURNING credential_id`, [agentId, JSON.stringify(wanted)])
  const { rows: inserted } = await db.query<{ credential_id: string }>(
    `INSERT INTO credentials (credential_id, client_id, kind, federated_issuer, federated_subject, federated_conditions)
     SELECT gen_random_uuid(), $1, 'federated', w.issuer, w.subject, w.conditions
     FROM jsonb_to_recordset($2::jsonb) AS w (issuer text, subject text, conditions jsonb)
     WHERE NOT EXISTS (SELECT 1 FROM credentials c
                       WHERE c.client_id = $1 AND c.kind = 'federated' AND c.status = 'active'
                         AND c.federated_issuer = w.issuer AND c.federated_subject = w.subject
                         AND c.federated_conditions IS NOT DISTINCT FROM w.conditions)
     RETURNING credential_id`, [agentId, JSON.stringify(wanted)])
  return { added: inserted.map((row) => row.credential_id), removed: revoked.map((row) => row.credential_id) }
}

export async function setAuthMethods (db: Queryable, agentId: string, methods: AuthMethod[]): Promise<void> {
  await db.query('UPDATE agents SET auth_methods = $2, updated_at = now() WHERE agent_id = $1', [agentId, methods])
}

/** Of `issuers`, those not registered as federation issuers. */
export async function unknownFederationIssuers (db: Queryable, issuers: string[]): Promise<string[]> {
  const { rows } = await db.query<{ issuer: string }>(
    'SELECT DISTINCT w.issuer FROM unnest($1::text[]) AS w (issuer) WHERE NOT EXISTS (SELECT 1 FROM federation_issuers f WHERE f.issuer = w.issuer) ORDER BY w.issuer',
    [issuers])
  return rows.map((row) => row.issuer)
}
