import type { Queryable } from './transaction.js'

/** SQL about the database itself rather than the product's tables. */

/** Creates database `name` unless it exists (dev mode's embedded cluster); `name` is a fixed identifier, never input. */
export async function ensureDatabase (db: Queryable, name: string): Promise<void> {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain database name: ${name}`)
  const { rowCount } = await db.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])
  if (rowCount === 0) await db.query(`CREATE DATABASE ${name}`)
}
