import { randomUUID } from 'node:crypto'
import type { Queryable } from './transaction.js'
import { conflict } from '../lib/errors.js'
import type { FederationIssuer } from '../schemas/federation.js'

/**
 * All SQL about trusted external issuers (workload identity federation). Rows become the API's
 * camelCase shape in toIssuer and nowhere else. The federated subjects that name an issuer are
 * `credentials` rows (repositories/credentials.ts, `revokeFederatedCredentials`).
 */

interface IssuerRow {
  issuer_id: string
  issuer: string
  jwks: { keys: object[] } | null
  jwks_uri: string | null
  discovery: boolean
  audiences: string[]
  algorithms: string[]
  max_lifetime_seconds: number
  created_at: Date
  updated_at: Date
}

const COLUMNS = 'issuer_id, issuer, jwks, jwks_uri, discovery, audiences, algorithms, max_lifetime_seconds, created_at, updated_at'

function toIssuer (row: IssuerRow): FederationIssuer {
  return {
    issuerId: row.issuer_id,
    issuer: row.issuer,
    ...(row.jwks === null ? {} : { jwks: row.jwks }),
    ...(row.jwks_uri === null ? {} : { jwksUri: row.jwks_uri }),
    discovery: row.discovery,
    audiences: row.audiences,
    algorithms: row.algorithms,
    maxLifetimeSeconds: row.max_lifetime_seconds,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString()
  }
}

/** Where an issuer's keys come from: exactly one source (the table's CHECK says the same). */
export type KeySource =
  | { jwks: { keys: object[] }, jwksUri?: undefined, discovery?: false }
  | { jwks?: undefined, jwksUri: string, discovery?: false }
  | { jwks?: undefined, jwksUri?: undefined, discovery: true }

export type NewFederationIssuer = KeySource & {
  issuer: string
  audiences: string[]
  algorithms: string[]
  maxLifetimeSeconds: number
}

export interface FederationIssuerChanges {
  source?: KeySource
  audiences?: string[]
  algorithms?: string[]
  maxLifetimeSeconds?: number
}

const UNIQUE_VIOLATION = '23505'

/** The three key-source columns of a source: the two it does not use are cleared. */
function sourceColumns (source: KeySource): [string | null, string | null, boolean] {
  return [source.jwks === undefined ? null : JSON.stringify(source.jwks), source.jwksUri ?? null, source.discovery === true]
}

export async function insertFederationIssuer (db: Queryable, input: NewFederationIssuer): Promise<FederationIssuer> {
  try {
    const { rows } = await db.query<IssuerRow>(
      `INSERT INTO federation_issuers (issuer_id, issuer, jwks, jwks_uri, discovery, audiences, algorithms, max_lifetime_seconds)
       VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8) RETURNING ${COLUMNS}`,
      [randomUUID(), input.issuer, ...sourceColumns(input), input.audiences, input.algorithms, input.maxLifetimeSeconds])
    return toIssuer(rows[0])
  } catch (error) {
    if ((error as { code?: string }).code === UNIQUE_VIOLATION) {
      throw conflict('FEDERATION_ISSUER_ALREADY_EXISTS', `the issuer ${input.issuer} is already trusted`)
    }
    throw error
  }
}

/**
 * Serialises the creation of issuers for the rest of the transaction, so that two concurrent
 * creations can't both see room under the maximum.
 */
export async function lockFederationIssuers (db: Queryable): Promise<void> {
  await db.query("SELECT pg_advisory_xact_lock(hashtext('agentidp:federation-issuers'))")
}

export async function countFederationIssuers (db: Queryable): Promise<number> {
  const { rows } = await db.query<{ count: number }>('SELECT count(*)::int AS count FROM federation_issuers')
  return rows[0].count
}

export async function findFederationIssuerById (db: Queryable, issuerId: string, options: { forUpdate?: boolean } = {}): Promise<FederationIssuer | null> {
  const { rows } = await db.query<IssuerRow>(
    `SELECT ${COLUMNS} FROM federation_issuers WHERE issuer_id = $1${options.forUpdate === true ? ' FOR UPDATE' : ''}`, [issuerId])
  return rows.length === 0 ? null : toIssuer(rows[0])
}

/**
 * The trusted issuer whose `iss` is exactly `issuer` (the token endpoint's lookup of an
 * assertion's issuer), or null. `forShare` holds the row for the rest of the transaction: a
 * deletion (which revokes the issuer's federated subjects) waits for it, so a subject registered
 * under that lock can't outlive its issuer unrevoked.
 */
export async function findFederationIssuer (db: Queryable, issuer: string, options: { forShare?: boolean } = {}): Promise<FederationIssuer | null> {
  const { rows } = await db.query<IssuerRow>(
    `SELECT ${COLUMNS} FROM federation_issuers WHERE issuer = $1${options.forShare === true ? ' FOR SHARE' : ''}`, [issuer])
  return rows.length === 0 ? null : toIssuer(rows[0])
}

/** Every issuer (at most `limit`), ordered by issuer. */
export async function listFederationIssuers (db: Queryable, limit: number): Promise<FederationIssuer[]> {
  const { rows } = await db.query<IssuerRow>(
    `SELECT ${COLUMNS} FROM federation_issuers ORDER BY issuer, issuer_id LIMIT $1`, [limit])
  return rows.map(toIssuer)
}

/** Applies a PATCH; a new key source replaces the current one whole. Returns the issuer as changed. */
export async function updateFederationIssuer (db: Queryable, issuerId: string, changes: FederationIssuerChanges): Promise<FederationIssuer | null> {
  const assignments: string[] = []
  const values: unknown[] = [issuerId]
  const set = (column: string, value: unknown, cast = '') => { values.push(value); assignments.push(`${column} = $${values.length}${cast}`) }
  if (changes.source !== undefined) {
    const [jwks, jwksUri, discovery] = sourceColumns(changes.source)
    set('jwks', jwks, '::jsonb')
    set('jwks_uri', jwksUri)
    set('discovery', discovery)
  }
  if (changes.audiences !== undefined) set('audiences', changes.audiences)
  if (changes.algorithms !== undefined) set('algorithms', changes.algorithms)
  if (changes.maxLifetimeSeconds !== undefined) set('max_lifetime_seconds', changes.maxLifetimeSeconds)
  const { rows } = await db.query<IssuerRow>(
    `UPDATE federation_issuers SET ${[...assignments, 'updated_at = now()'].join(', ')} WHERE issuer_id = $1 RETURNING ${COLUMNS}`, values)
  return rows.length === 0 ? null : toIssuer(rows[0])
}

/** Removes an issuer; true when there was one. Its federated subjects are revoked by the caller, in the same transaction. */
export async function deleteFederationIssuer (db: Queryable, issuerId: string): Promise<boolean> {
  const { rowCount } = await db.query('DELETE FROM federation_issuers WHERE issuer_id = $1', [issuerId])
  return rowCount === 1
}
