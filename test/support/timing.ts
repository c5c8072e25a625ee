import { monitorEventLoopDelay } from 'node:perf_hooks'

/**
 * How long `work` took in the time this process was given: the wall-clock time less the longest
 * stall of its event loop meanwhile. A busy CI machine that deschedules the process delays the
 * product's own timers (a probe's or a client's timeout) just as much, so a test that holds an
 * answer to "within N ms" judges this figure, and only the product's time counts.
 */
export async function timedInProcess<T> (work: () => Promise<T>): Promise<{ result: T, ms: number }> {
  const stalls = monitorEventLoopDelay({ resolution: 10 })
  stalls.enable()
  const started = performance.now()
  try {
    const result = await work()
    const elapsed = performance.now() - started
    // the histogram's max is 0 when no sample was taken; its samples include the 10 ms resolution
    return { result, ms: elapsed - Math.max(0, stalls.max / 1e6 - 10) }
  } finally {
    stalls.disable()
  }
}
