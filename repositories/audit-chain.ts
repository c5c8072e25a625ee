import type { Queryable } from './transaction.js'
import { exactTimestamp } from './columns.js'

/**
 * SQL of the hash chain over audit events: the seals (audit_seals), the chain head (audit_chain)
 * and where the retained chain starts (audit_chain_anchor). Used by the sealer, the verification
 * and retention (services/audit/).
 */

/** Every field of an event the chain covers, as PostgreSQL's own text (services/audit/chain.ts). */
export interface ChainedEvent {
  /** the position in the chain, a decimal integer from 1 */
  chainIndex: string
  eventId: string
  createdAt: string
  agentId: string | null
  action: string
  outcome: string
  ipAddress: string | null
  userAgent: string | null
  metadata: string
}

/** Every field the chain covers, as PostgreSQL's own text. */
const CHAINED_COLUMNS = `e.event_id::text AS event_id, ${exactTimestamp('e.created_at')} AS created_at, e.agent_id::text AS agent_id,
  e.action, e.outcome, e.ip_address::text AS ip_address, e.user_agent, e.metadata::text AS metadata`

interface ChainedRow {
  event_id: string
  created_at: string
  agent_id: string | null
  action: string
  outcome: string
  ip_address: string | null
  user_agent: string | null
  metadata: string
}

function toChained (row: ChainedRow, chainIndex: number): ChainedEvent {
  return {
    chainIndex: String(chainIndex),
    eventId: row.event_id,
    createdAt: row.created_at,
    agentId: row.agent_id,
    action: row.action,
    outcome: row.outcome,
    ipAddress: row.ip_address,
    userAgent: row.user_agent,
    metadata: row.metadata
  }
}

export interface SealingState {
  headIndex: number
  headHash: Buffer
  /** every transaction with a lower id has ended: its events are all visible now */
  watermark: string
  /** order key (tx_id, created_at, event_id) of the last sealed event */
  sealedTx: string
  sealedCreatedAt: string
  sealedEventId: string
}

/** Waits (on the database, not a timer) until the sealer at work, if any, has committed or rolled back. */
export async function awaitChainHead (db: Queryable): Promise<void> {
  await db.query('SELECT 1 FROM audit_chain FOR UPDATE')
}

/**
 * Takes the sealer's mutex (the chain head's row lock) for the rest of the transaction, or returns
 * null at once when another sealer holds it. The watermark is read in the same statement, before
 * anything else: any transaction below it has ended, so what the next statement sees of it is final.
 */
export async function lockChainHead (db: Queryable): Promise<SealingState | null> {
  const { rows } = await db.query<{
    head_index: string, head_hash: Buffer, watermark: string, sealed_tx: string, sealed_created_at: string, sealed_event_id: string
  }>(
    `SELECT head_index, head_hash, pg_snapshot_xmin(pg_current_snapshot())::text AS watermark,
       sealed_tx::text AS sealed_tx, ${exactTimestamp('sealed_created_at')} AS sealed_created_at, sealed_event_id
     FROM audit_chain FOR UPDATE SKIP LOCKED`)
  if (rows.length === 0) return null
  const row = rows[0]
  return {
    headIndex: Number(row.head_index),
    headHash: row.head_hash,
    watermark: row.watermark,
    sealedTx: row.sealed_tx,
    sealedCreatedAt: row.sealed_created_at,
    sealedEventId: row.sealed_event_id
  }
}

/**
 * Whether any event is ready to be sealed: a read-only look (no lock, no transaction id, nothing to
 * flush) so that a sealer with nothing to do costs one index probe.
 */
export async function hasSealableEvents (db: Queryable): Promise<boolean> {
  // sub-selects become parameters of one ordered index probe (a join here would scan the table)
  const { rows } = await db.query(
    `SELECT 1 FROM audit_events e
     WHERE (e.tx_id, e.created_at, e.event_id) > ((SELECT sealed_tx FROM audit_chain), (SELECT sealed_created_at FROM audit_chain),
         (SELECT sealed_event_id FROM audit_chain))
       AND e.tx_id < (SELECT pg_snapshot_xmin(pg_current_snapshot()))
     ORDER BY e.tx_id, e.created_at, e.event_id LIMIT 1`)
  return rows.length > 0
}

export interface UnsealedEvent { txId: string, fields: Omit<ChainedEvent, 'chainIndex'> }

/** The next committed events after the last sealed one, in chain order, from ended transactions only. */
export async function nextUnsealedEvents (db: Queryable, state: SealingState, limit: number): Promise<UnsealedEvent[]> {
  const { rows } = await db.query<ChainedRow & { tx_id: string }>(
    `SELECT e.tx_id::text AS tx_id, ${CHAINED_COLUMNS}
     FROM audit_events e
     WHERE (e.tx_id, e.created_at, e.event_id) > ($1::xid8, $2::timestamptz, $3::uuid) AND e.tx_id < $4::xid8
     ORDER BY e.tx_id, e.created_at, e.event_id
     LIMIT $5`,
    [state.sealedTx, state.sealedCreatedAt, state.sealedEventId, state.watermark, limit])
  return rows.map((row) => {
    const { chainIndex: _unused, ...fields } = toChained(row, 0)
    return { txId: row.tx_id, fields }
  })
}

export interface Seal { chainIndex: number, eventId: string, hash: Buffer, createdAt: string }

/** Records seals and moves the head (and the sealer's position) to the last of them. */
export async function appendSeals (db: Queryable, seals: Seal[], last: { txId: string, createdAt: string, eventId: string }): Promise<void> {
  await db.query(
    `INSERT INTO audit_seals (chain_index, event_id, hash, created_at)
     SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::bytea[], $4::timestamptz[])`,
    [seals.map((seal) => seal.chainIndex), seals.map((seal) => seal.eventId), seals.map((seal) => seal.hash), seals.map((seal) => seal.createdAt)])
  const head = seals[seals.length - 1]
  await db.query(
    `UPDATE audit_chain SET head_index = $1, head_hash = $2, head_event_id = $3,
       sealed_tx = $4::xid8, sealed_created_at = $5::timestamptz, sealed_event_id = $6`,
    [head.chainIndex, head.hash, head.eventId, last.txId, last.createdAt, last.eventId])
}

// ---------------------------------------------------------------------------------------------
// Verifying

export interface ChainState {
  headIndex: number
  headHash: Buffer
  headEventId: string | null
  /** the first chain index retention kept, and the hash before it */
  firstIndex: number
  prevHash: Buffer
}

export async function readChainState (db: Queryable): Promise<ChainState> {
  const { rows } = await db.query<{ head_index: string, head_hash: Buffer, head_event_id: string | null, first_index: string, prev_hash: Buffer }>(
    `SELECT c.head_index, c.head_hash, c.head_event_id, a.first_index, a.prev_hash
     FROM audit_chain c CROSS JOIN audit_chain_anchor a`)
  const row = rows[0]
  return {
    headIndex: Number(row.head_index),
    headHash: row.head_hash,
    headEventId: row.head_event_id,
    firstIndex: Number(row.first_index),
    prevHash: row.prev_hash
  }
}

/** The first and last chain index of the sealed events created within [start, end]; null when none. */
export async function chainRangeOf (db: Queryable, start: string | undefined, end: string | undefined): Promise<{ from: number, to: number } | null> {
  const { rows } = await db.query<{ from_index: string | null, to_index: string | null }>(
    `SELECT min(chain_index) AS from_index, max(chain_index) AS to_index FROM audit_seals
     WHERE ($1::timestamptz IS NULL OR created_at >= $1::timestamptz) AND ($2::timestamptz IS NULL OR created_at <= $2::timestamptz)`,
    [start ?? null, end ?? null])
  const row = rows[0]
  return row.from_index === null || row.to_index === null ? null : { from: Number(row.from_index), to: Number(row.to_index) }
}

export async function sealHashAt (db: Queryable, chainIndex: number): Promise<Buffer | null> {
  const { rows } = await db.query<{ hash: Buffer }>('SELECT hash FROM audit_seals WHERE chain_index = $1', [chainIndex])
  return rows.length === 0 ? null : rows[0].hash
}

export interface SealedEvent {
  chainIndex: number
  /** the event the seal names, whether or not it still exists */
  sealedEventId: string
  hash: Buffer
  /** null when the event row is gone */
  event: ChainedEvent | null
}

/** Up to `limit` seals from `from` to `to` in chain order, each with its event (if it still exists). */
export async function sealedSegment (db: Queryable, from: number, to: number, limit: number): Promise<SealedEvent[]> {
  const { rows } = await db.query<Partial<ChainedRow> & { chain_index: string, sealed_event_id: string, hash: Buffer, present: boolean }>(
    `SELECT s.chain_index, s.event_id AS sealed_event_id, s.hash, e.event_id IS NOT NULL AS present, ${CHAINED_COLUMNS}
     FROM audit_seals s LEFT JOIN audit_events e ON e.event_id = s.event_id
     WHERE s.chain_index >= $1 AND s.chain_index <= $2
     ORDER BY s.chain_index
     LIMIT $3`, [from, to, limit])
  return rows.map((row) => {
    const chainIndex = Number(row.chain_index)
    return {
      chainIndex,
      sealedEventId: row.sealed_event_id,
      hash: row.hash,
      event: row.present ? toChained(row as ChainedRow, chainIndex) : null
    }
  })
}

// ---------------------------------------------------------------------------------------------
// Retention

export interface Anchor { firstIndex: number, prevHash: Buffer }

/** Takes the pruner's mutex (the anchor's row lock), or returns null at once when another pruner holds it. */
export async function lockChainAnchor (db: Queryable): Promise<Anchor | null> {
  const { rows } = await db.query<{ first_index: string, prev_hash: Buffer }>(
    'SELECT first_index, prev_hash FROM audit_chain_anchor FOR UPDATE SKIP LOCKED')
  return rows.length === 0 ? null : { firstIndex: Number(rows[0].first_index), prevHash: rows[0].prev_hash }
}

/** The oldest seals of the chain, from its anchor on, each saying whether its event is older than `cutoff`. */
export async function chainPrefix (db: Queryable, from: number, limit: number, cutoff: Date): Promise<Array<{ chainIndex: number, hash: Buffer, expired: boolean }>> {
  const { rows } = await db.query<{ chain_index: string, hash: Buffer, expired: boolean }>(
    `SELECT chain_index, hash, created_at < $3 AS expired FROM audit_seals
     WHERE chain_index >= $1 ORDER BY chain_index LIMIT $2`, [from, limit, cutoff])
  return rows.map((row) => ({ chainIndex: Number(row.chain_index), hash: row.hash, expired: row.expired }))
}

/**
 * Deletes the events sealed at [first, last] and their seals, and anchors the chain on what
 * follows: `prevHash` is the hash of the last deleted seal. Returns the number of events deleted.
 */
export async function deleteChainPrefix (db: Queryable, first: number, last: number, prevHash: Buffer): Promise<number> {
  const { rowCount } = await db.query(
    `DELETE FROM audit_events WHERE event_id IN (
       SELECT event_id FROM audit_seals WHERE chain_index >= $1 AND chain_index <= $2)`, [first, last])
  await db.query('DELETE FROM audit_seals WHERE chain_index >= $1 AND chain_index <= $2', [first, last])
  await db.query('UPDATE audit_chain_anchor SET first_index = $1, prev_hash = $2', [last + 1, prevHash])
  return rowCount ?? 0
}
