import fp from 'fastify-plugin'
import underPressure from '@fastify/under-pressure'
import type { FastifyInstance } from 'fastify'
import { OverloadedError } from '../lib/errors.js'

/**
 * Sheds load before the process falls over: while the event loop lags more than
 * MAX_EVENT_LOOP_DELAY_MS, requests are answered at once with 503 + Retry-After (problem+json,
 * or temporarily_unavailable on the OAuth endpoints) instead of queueing behind the work that
 * already can't keep up. Liveness (`config: { shedLoad: false }`) is never shed: a busy process is
 * alive, and an orchestrator that restarted it would only lose capacity.
 */
const RETRY_AFTER_SECONDS = 5

declare module 'fastify' {
  interface FastifyContextConfig {
    /** false: answer even while the process sheds load */
    shedLoad?: boolean
  }
}

/** Rejecting hands the error to the error handler, which renders the 503 (with Retry-After) in the route's format. */
async function shed (): Promise<void> {
  throw new OverloadedError('the server is overloaded; retry later')
}

export default fp(async function loadSheddingPlugin (app: FastifyInstance) {
  const maxDelay = app.config.MAX_EVENT_LOOP_DELAY_MS
  if (maxDelay === 0) return
  await app.register(underPressure, {
    maxEventLoopDelay: maxDelay,
    retryAfter: RETRY_AFTER_SECONDS,
    pressureHandler: (request) => request.routeOptions.config.shedLoad === false ? undefined : shed()
  })
}, { name: 'load-shedding', dependencies: ['config', 'errors'], fastify: '5.x' })
