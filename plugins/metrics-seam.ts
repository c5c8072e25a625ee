/**
 * The product metrics other plugins report to. The metrics plugin (Prometheus) implements it; until
 * it is registered `app.metrics` is undefined and reporting is a no-op, so features never depend on
 * metrics being enabled.
 */
export interface ProductMetrics {
  agentRegistered (deploymentEnv: string): void
  tokensIssued (scope: string): void
  observeRedis (command: string, seconds: number): void
  observeDb (operation: string, seconds: number): void
}

declare module 'fastify' {
  interface FastifyInstance { metrics?: ProductMetrics }
}
