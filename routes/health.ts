import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Health, Liveness, Readiness } from '../schemas/health.js'
import { json, jsonOrOverloaded } from '../schemas/responses.js'
import { pendingMigrations } from '../repositories/migrations.js'

/**
 * Health, split the way orchestrators use it:
 * - /health/live: the process and its event loop answer; never a dependency (container
 *   HEALTHCHECK, ECS container check, Kubernetes liveness): a database failover must not make the
 *   orchestrator replace healthy processes. Never shed under load.
 * - /health/ready: PostgreSQL and Redis (and Vault, when enabled) answer and the schema is at the latest bundled migration
 *   (load balancer targets, Cloud Run's startup probe, compose's depends_on).
 * - /health: the deployment reference's runbook shape, kept as it was.
 * Each probe gets PROBE_TIMEOUT_MS, so every answer comes within a second even when one hangs.
 */
const PROBE_TIMEOUT_MS = 700

type Probe<T> = T | 'error'

async function probe<T> (check: () => Promise<T>): Promise<Probe<T>> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'error'>((resolve) => { timer = setTimeout(() => resolve('error'), PROBE_TIMEOUT_MS) })
  try {
    return await Promise.race([check().catch(() => 'error' as const), timeout])
  } finally {
    clearTimeout(timer)
  }
}

const health: FastifyPluginAsyncTypebox = async function healthRoutes (app) {
  const vault = app.vault
  /** Every dependency at once; the schema's migration state comes with PostgreSQL's answer. */
  async function dependencies () {
    const [pending, redis, vaultStatus] = await Promise.all([
      probe(() => pendingMigrations(app.pg)),
      probe(async () => { await app.cache.ping(); return 'connected' as const }),
      // Vault only when enabled: sys/health, which answers 503 while Vault is sealed
      vault === undefined ? undefined : probe(async () => { await vault.check(); return 'connected' as const })
    ])
    return {
      postgres: pending === 'error' ? 'error' as const : 'connected' as const,
      redis,
      ...(vaultStatus === undefined ? {} : { vault: vaultStatus }),
      migrations: pending === 'error' ? 'unknown' as const : pending.length === 0 ? 'current' as const : 'pending' as const
    }
  }
  const healthy = (status: { postgres: string, redis: string, vault?: string }) =>
    status.postgres === 'connected' && status.redis === 'connected' && (status.vault === undefined || status.vault === 'connected')

  const operation = (operationId: string, summary: string, response: Record<number, unknown>) =>
    ({ tags: ['operations'], operationId, summary, security: [], response })

  app.get('/health', {
    logLevel: 'warn',
    schema: operation('getHealth', 'Dependency status (the runbook\'s check)', { 200: json(Health, 'PostgreSQL and Redis answer'), 503: jsonOrOverloaded(Health, 'A dependency does not answer') })
  }, async function getHealth (_request, reply) {
    const { migrations: _migrations, ...status } = await dependencies()
    const ok = healthy(status)
    reply.code(ok ? 200 : 503).header('cache-control', 'no-store')
    return { status: ok ? 'ok' as const : 'degraded' as const, ...status }
  })

  app.get('/health/live', {
    logLevel: 'warn',
    config: { shedLoad: false },
    schema: operation('getLiveness', 'Liveness: the process can serve (no dependency is checked)', { 200: json(Liveness, 'The process serves') })
  }, async function getLiveness (_request, reply) {
    reply.header('cache-control', 'no-store')
    return { status: 'ok' as const }
  })

  app.get('/health/ready', {
    logLevel: 'warn',
    schema: operation('getReadiness', 'Readiness: PostgreSQL, Redis (and Vault when enabled) answer and the schema is at the latest migration',
      { 200: json(Readiness, 'Ready to serve'), 503: jsonOrOverloaded(Readiness, 'Not ready: a dependency does not answer or migrations are pending') })
  }, async function getReadiness (_request, reply) {
    const status = await dependencies()
    const ready = healthy(status) && status.migrations === 'current'
    reply.code(ready ? 200 : 503).header('cache-control', 'no-store')
    return { status: ready ? 'ok' as const : 'degraded' as const, ...status }
  })
}

export default health
