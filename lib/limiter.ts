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

/**
 * One limiter per key (e.g. per client address), each running at most `concurrency` tasks and
 * queueing at most `maxQueued`: a key with many tasks waits in its own queue instead of filling a
 * shared one. A key's limiter exists only while it has tasks, so idle keys cost nothing.
 */
export interface KeyedLimiter {
  run<T> (key: string, task: () => Promise<T>): Promise<T>
  /** keys with tasks running or queued */
  readonly size: number
}

export function createKeyedLimiter (concurrency: number, maxQueued: number): KeyedLimiter {
  const limiters = new Map<string, { limiter: Limiter, tasks: number }>()
  return {
    async run (key, task) {
      let entry = limiters.get(key)
      if (entry === undefined) {
        entry = { limiter: createLimiter(concurrency, maxQueued), tasks: 0 }
        limiters.set(key, entry)
      }
      entry.tasks += 1
      try {
        return await entry.limiter.run(task)
      } finally {
        entry.tasks -= 1
        if (entry.tasks === 0) limiters.delete(key)
      }
    },
    get size () { return limiters.size }
  }
}
