/**
 * A background task that runs every `intervalMs`, one run at a time, and sooner when asked
 * (`nudge`). A failing task backs off: after n failures in a row the next run waits
 * intervalMs · 2ⁿ (at most `maxBackoffMs`) and nudges are ignored meanwhile, so an outage costs a
 * few attempts and one warning (the owner's `onError` sees how many failures in a row), not a
 * stack trace a second.
 */
export interface PeriodicOptions<T> {
  intervalMs: number
  /** delay before the first run; default `intervalMs` */
  firstRunMs?: number
  maxBackoffMs: number
  onError (error: unknown, failuresInARow: number): void
  /** after a successful run; `failuresBefore` > 0 means it recovered */
  onSuccess? (result: T, failuresBefore: number): void
}

export interface Periodic<T> {
  /** asks for a run within `delayMs` (unless one is due sooner, or the task is backing off) */
  nudge (delayMs: number): void
  /** a run now, after any run in progress; its result, or its error */
  runNow (): Promise<T>
  /** no more runs; resolves once a run in progress has ended */
  stop (): Promise<void>
}

export function startPeriodic<T> (task: () => Promise<T>, options: PeriodicOptions<T>): Periodic<T> {
  let timer: NodeJS.Timeout | null = null
  let dueAt = Number.POSITIVE_INFINITY
  let running: Promise<T> | null = null
  // a timer fired during a run: another run follows it at once
  let rerun = false
  let failures = 0
  let stopped = false

  function clearTimer (): void {
    if (timer !== null) clearTimeout(timer)
    timer = null
    dueAt = Number.POSITIVE_INFINITY
  }

  function schedule (delayMs: number): void {
    if (stopped) return
    const at = Date.now() + delayMs
    if (timer !== null && dueAt <= at) return
    clearTimer()
    dueAt = at
    timer = setTimeout(function fire () {
      timer = null
      dueAt = Number.POSITIVE_INFINITY
      if (running !== null) rerun = true
      else run().catch(() => {})
    }, delayMs)
    timer.unref()
  }

  function backoffDelay (): number {
    return Math.min(options.intervalMs * 2 ** failures, options.maxBackoffMs)
  }

  function run (): Promise<T> {
    const current = task().then((result) => {
      const before = failures
      failures = 0
      options.onSuccess?.(result, before)
      return result
    }, (error: unknown) => {
      failures += 1
      options.onError(error, failures)
      throw error
    }).finally(() => {
      running = null
      if (failures > 0) {
        rerun = false
        clearTimer()
        schedule(backoffDelay())
      } else if (rerun) {
        rerun = false
        schedule(0)
      } else {
        schedule(options.intervalMs)
      }
    })
    running = current
    return current
  }

  schedule(options.firstRunMs ?? options.intervalMs)

  return {
    nudge (delayMs) {
      if (failures === 0) schedule(delayMs)
    },
    async runNow () {
      while (running !== null) await running.catch(() => {})
      return await run()
    },
    async stop () {
      stopped = true
      clearTimer()
      while (running !== null) await running.catch(() => {})
    }
  }
}
