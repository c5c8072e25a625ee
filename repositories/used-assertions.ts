import type { Queryable } from './transaction.js'

/**
 * The durable record of JWT assertions already used (RFC 7523 §3, `jti`): keyed by a hash of the
 * assertion's issuer and jti, kept until the assertion expires.
 */

/** Records an assertion as used; false when it already was (a replay). */
export async function recordUsedAssertion (db: Queryable, key: string, expiresAtSeconds: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `INSERT INTO used_assertions (assertion_key, expires_at) VALUES ($1, to_timestamp($2))
     ON CONFLICT (assertion_key) DO NOTHING`, [key, expiresAtSeconds])
  return rowCount === 1
}

/** Deletes, in one bounded batch, records of assertions that have expired (they can't be replayed anyway). */
export async function pruneUsedAssertions (db: Queryable, batchSize: number): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM used_assertions WHERE assertion_key IN (
       SELECT assertion_key FROM used_assertions WHERE expires_at < now() - interval '1 hour' LIMIT $1
       FOR UPDATE SKIP LOCKED)`, [batchSize])
  return rowCount ?? 0
}
