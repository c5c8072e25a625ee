import pg from 'pg'
import { pruneExpiredEvents } from '../services/audit/retention.js'

export interface PruneResult { deleted: number, retentionDays: number }

/**
 * `agentidp audit prune` (and `node dist/server.js audit-prune`), for cron: the retention run every server instance also does
 * on a schedule, until no expired event is left. Safe beside running servers and other prune
 * runs (see services/audit/retention.ts).
 */
export async function auditPrune (databaseUrl: string, retentionDays: number, onProgress?: (deleted: number) => void): Promise<PruneResult> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: 1, connectionTimeoutMillis: 5000, application_name: 'agentidp-audit-prune' })
  try {
    const deleted = await pruneExpiredEvents(pool, retentionDays, { maxBatches: Number.POSITIVE_INFINITY, onProgress })
    return { deleted, retentionDays }
  } finally {
    await pool.end()
  }
}
