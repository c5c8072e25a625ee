import type { FastifyPluginAsync } from 'fastify'
import { pruneExpiredRevocations } from './repository.js'

/**
 * Deletes revocations of tokens that expired over an hour ago, in bounded batches, every ten
 * minutes. Several instances may run it at once: SKIP LOCKED hands each a different batch. An
 * expired token is refused by its `exp` before its revocation is consulted, so pruning changes no answer.
 */
const INTERVAL_MS = 10 * 60_000
const BATCH_SIZE = 5000
const MAX_BATCHES_PER_RUN = 20

const pruneTokens: FastifyPluginAsync = async function pruneTokensJob (app) {
  async function prune (): Promise<void> {
    try {
      for (let batch = 0; batch < MAX_BATCHES_PER_RUN; batch += 1) {
        if (await pruneExpiredRevocations(app.pg, BATCH_SIZE) < BATCH_SIZE) return
      }
    } catch (error) {
      app.log.warn({ err: error }, 'pruning expired token revocations failed; will retry')
    }
  }
  const timer = setInterval(() => { void prune() }, INTERVAL_MS)
  timer.unref()
  app.addHook('onClose', async () => { clearInterval(timer) })
}

export default pruneTokens
