import { OverloadedError } from './errors.js'

/**
 * Runs at most `concurrency` tasks at once and queues at most `maxQueued` more; beyond that a task
 * is refused at once. Used to keep argon2 verifications (≈ 45 ms of a libuv thread each) from
 * occupying every thread that token signing also needs.
 */
export interface Limiter {
  run<T> (task: () => Promise<T>): Promise<T>
}

export function createLimiter (concurrency: number, maxQueued: number): Limiter {
  let active = 0
  const waiting: Array<() => void> = []
  // a finishing task hands its slot straight to the next waiter, so no newcomer can slip in between
  function release (): void {
    const next = waiting.shift()
    if (next === undefined) active -= 1
    else next()
  }
  return {
    async run (task) {
      if (active >= concurrency) {
        if (waiting.length >= maxQueued) throw new OverloadedError()
        await new Promise<void>((resolve) => waiting.push(resolve))
      } else {
        active += 1
      }
      try {
        return await task()
      } finally {
        release()
      }
    }
  }
}
