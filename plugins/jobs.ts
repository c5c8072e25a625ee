import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { startPeriodic, type Periodic, type PeriodicOptions } from '../lib/periodic.js'
import { sealPending } from '../services/audit/sealer.js'
import { createFloodLedger, writeFloodSummaries, type FloodLedger } from '../services/audit/floods.js'
import { pruneExpiredEvents } from '../services/audit/retention.js'
import { pruneRevocations } from '../services/revocation.js'
import { reconcile } from '../services/vault-secrets.js'

/**
 * Every background timer of the process lives here: the audit sealer (also nudged by writes, see
 * plugins/audit.ts), the summaries of refusals a flood repeats (services/audit/floods.ts: one row
 * per address and minute instead of one per request), audit retention and the pruning of expired
 * revocations. Intervals come from
 * config. Every instance runs them; the work itself coordinates across instances (row locks with
 * SKIP LOCKED), so running them everywhere is safe. A job that keeps failing backs off up to
 * MAX_BACKOFF_MS and says so once (a warning on its first failure, debug lines after, one info line
 * when it recovers), instead of a stack trace a second during an outage.
 */
const MAX_BACKOFF_MS = 5 * 60_000
// not in the middle of a rolling deploy's warm-up
const RETENTION_FIRST_RUN_MS = 60_000
// the per-IP limits count per minute: one summary per address and kind per window
const FLOOD_SUMMARY_INTERVAL_MS = 60_000

export interface Jobs {
  /** seals committed audit events into the hash chain; resolves with how many it sealed */
  readonly sealer: Periodic<number>
  /** refusals counted instead of written (plugins/audit.ts `limitBreached`) */
  readonly floods: FloodLedger
  /** writes the floods' summaries; resolves with how many rows */
  readonly floodSummaries: Periodic<number>
  /** Vault enabled: renews a renewable token at a third of its TTL; resolves with the new TTL in seconds */
  readonly vaultRenewal?: Periodic<number>
  /** Vault enabled: removes Vault secrets no usable credential row names (services/vault-secrets.ts) */
  readonly vaultReconciliation?: Periodic<{ erased: number, versionsDestroyed: number }>
}

/** A secret written less than this long ago may belong to a generate or rotation still in progress. */
export const VAULT_RECONCILE_GRACE_MS = 5 * 60_000
// a third of the token's TTL leaves two more attempts (with backoff) before it expires
const renewalIntervalMs = (ttlSeconds: number) => Math.max(1000, Math.min(ttlSeconds * 1000 / 3, 60 * 60_000))

declare module 'fastify' {
  interface FastifyInstance { jobs: Jobs }
}

function reportingTo<T> (app: FastifyInstance, job: string): Pick<PeriodicOptions<T>, 'onError' | 'onSuccess'> {
  return {
    onError (error, failuresInARow) {
      const { message, code } = error as { message?: string, code?: string }
      const fields = { job, failuresInARow, err: { message, code } }
      if (failuresInARow === 1) app.log.warn(fields, `${job} failed; retrying with backoff`)
      else app.log.debug(fields, `${job} failed again`)
    },
    onSuccess (_result, failuresBefore) {
      if (failuresBefore > 0) app.log.info({ job, failuresBefore }, `${job} recovered`)
    }
  }
}

export default fp(async function jobsPlugin (app: FastifyInstance) {
  const pool = app.pg.pool
  const { AUDIT_SEAL_INTERVAL_MS, AUDIT_RETENTION_DAYS, AUDIT_RETENTION_INTERVAL_SECONDS, TOKEN_PRUNE_INTERVAL_SECONDS } = app.config
  const running: Array<{ stop (): Promise<void> }> = []

  const sealer = startPeriodic<number>(() => sealPending(pool), {
    intervalMs: AUDIT_SEAL_INTERVAL_MS, maxBackoffMs: MAX_BACKOFF_MS, ...reportingTo(app, 'audit sealer')
  })
  running.push(sealer)

  const floods = createFloodLedger()
  const floodSummaries = startPeriodic<number>(() => writeFloodSummaries(pool, floods), {
    intervalMs: FLOOD_SUMMARY_INTERVAL_MS, maxBackoffMs: MAX_BACKOFF_MS, ...reportingTo(app, 'audit flood summaries')
  })
  running.push(floodSummaries)

  if (AUDIT_RETENTION_DAYS > 0) {
    const report = reportingTo<number>(app, 'audit retention')
    running.push(startPeriodic(() => pruneExpiredEvents(pool, AUDIT_RETENTION_DAYS), {
      intervalMs: AUDIT_RETENTION_INTERVAL_SECONDS * 1000,
      firstRunMs: Math.min(RETENTION_FIRST_RUN_MS, AUDIT_RETENTION_INTERVAL_SECONDS * 1000),
      maxBackoffMs: MAX_BACKOFF_MS,
      onError: report.onError,
      onSuccess (deleted, failuresBefore) {
        report.onSuccess?.(deleted, failuresBefore)
        if (deleted > 0) app.log.info({ deleted, retentionDays: AUDIT_RETENTION_DAYS }, 'expired audit events deleted')
      }
    }))
  }

  running.push(startPeriodic(() => pruneRevocations(pool), {
    intervalMs: TOKEN_PRUNE_INTERVAL_SECONDS * 1000, maxBackoffMs: MAX_BACKOFF_MS, ...reportingTo(app, 'revocation pruning')
  }))

  const vault = app.vault
  let vaultRenewal: Periodic<number> | undefined
  let vaultReconciliation: Jobs['vaultReconciliation']
  if (vault !== undefined) {
    if (vault.token.renewable && vault.token.ttlSeconds > 0) {
      vaultRenewal = startPeriodic(() => vault.renewSelf(), {
        intervalMs: renewalIntervalMs(vault.token.ttlSeconds), maxBackoffMs: MAX_BACKOFF_MS, ...reportingTo(app, 'vault token renewal')
      })
      running.push(vaultRenewal)
    }
    const report = reportingTo<{ erased: number, versionsDestroyed: number }>(app, 'vault reconciliation')
    vaultReconciliation = startPeriodic(() => reconcile(vault.kv, pool, { graceMs: VAULT_RECONCILE_GRACE_MS }), {
      intervalMs: app.config.VAULT_RECONCILE_INTERVAL_SECONDS * 1000,
      maxBackoffMs: MAX_BACKOFF_MS,
      onError: report.onError,
      onSuccess (outcome, failuresBefore) {
        report.onSuccess?.(outcome, failuresBefore)
        if (outcome.erased + outcome.versionsDestroyed > 0) app.log.info(outcome, 'vault: stray client secrets removed')
      }
    })
    running.push(vaultReconciliation)
  }

  app.decorate('jobs', { sealer, floods, floodSummaries, vaultRenewal, vaultReconciliation })
  // registered after the db plugin, so this runs before the pool closes: a run in progress ends first
  app.addHook('onClose', async () => {
    await Promise.all(running.map((job) => job.stop()))
    // what was counted since the last summary is written, not lost with the process
    await writeFloodSummaries(pool, floods).catch((error: unknown) => {
      app.log.warn({ job: 'audit flood summaries', err: { message: (error as Error).message } }, 'the last flood summaries could not be written')
    })
  })
}, { name: 'jobs', dependencies: ['config', 'db'], fastify: '5.x' })
