import { Type } from 'typebox'

const DependencyStatus = Type.Enum(['connected', 'error'])

/** GET /health: the deployment reference's runbook shape, kept as is. */
export const Health = Type.Object({
  status: Type.Enum(['ok', 'degraded']),
  postgres: DependencyStatus,
  redis: DependencyStatus,
  vault: Type.Optional(DependencyStatus)
}, { $id: 'Health', title: 'Health', description: 'dependency status; no versions', examples: [{ status: 'ok', postgres: 'connected', redis: 'connected' }] })

/** GET /health/live: the process can serve; dependencies are not checked. */
export const Liveness = Type.Object({
  status: Type.Literal('ok')
}, { $id: 'Liveness', title: 'Liveness', examples: [{ status: 'ok' }] })

/** GET /health/ready: every dependency answers and the schema is at the latest migration. */
export const Readiness = Type.Object({
  status: Type.Enum(['ok', 'degraded']),
  postgres: DependencyStatus,
  redis: DependencyStatus,
  vault: Type.Optional(DependencyStatus),
  migrations: Type.Enum(['current', 'pending', 'unknown'], { description: 'unknown while PostgreSQL does not answer' })
}, { $id: 'Readiness', title: 'Readiness', examples: [{ status: 'ok', postgres: 'connected', redis: 'connected', migrations: 'current' }] })
