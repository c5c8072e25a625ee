import t from 'tap'
import { startPeriodic } from '../../lib/periodic.js'

/**
 * Background jobs' scheduler. Timers never fire early, so every timing assertion here is a lower
 * bound (a loaded machine only makes gaps longer) and every wait polls with a generous deadline.
 */
async function until (condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

t.test('a healthy task runs again every interval, one run at a time', async (t) => {
  let runs = 0
  let concurrent = 0
  let maxConcurrent = 0
  const job = startPeriodic(async () => {
    concurrent += 1
    maxConcurrent = Math.max(maxConcurrent, concurrent)
    await new Promise((resolve) => setTimeout(resolve, 15))
    concurrent -= 1
    runs += 1
    return runs
  }, { intervalMs: 5, firstRunMs: 0, maxBackoffMs: 1000, onError: () => {} })
  await until(() => runs >= 5, 'five runs')
  for (let n = 0; n < 20; n += 1) job.nudge(0)
  const forced = await job.runNow()
  await job.stop()
  t.ok(forced >= 6, 'runNow waits for the run in progress, then runs and returns its result')
  t.equal(maxConcurrent, 1, 'never two runs at once, nudged or not')
})

t.test('a failing task backs off exponentially up to the cap, ignores nudges meanwhile, and reports each failure in a row', async (t) => {
  const started: number[] = []
  const reported: number[] = []
  const job = startPeriodic(async () => {
    started.push(Date.now())
    throw new Error('database down')
  }, { intervalMs: 20, firstRunMs: 0, maxBackoffMs: 160, onError: (_error, inARow) => { reported.push(inARow) } })
  await until(() => started.length >= 6, 'six attempts')
  job.nudge(0)
  job.nudge(0)
  await job.stop()
  t.same(reported.slice(0, 6), [1, 2, 3, 4, 5, 6], 'failures are counted in a row')
  const gaps = started.slice(1).map((at, index) => at - started[index])
  // after n failures the next attempt waits 20·2ⁿ ms, capped at 160
  const expected = [40, 80, 160, 160, 160]
  expected.forEach((minimum, index) => t.ok(gaps[index] >= minimum - 2, `attempt ${index + 2} waited ${gaps[index]} ms ≥ ${minimum} ms`))
})

t.test('a task that recovers says how many failures came before, and its pace returns to the interval', async (t) => {
  let calls = 0
  let recoveredAfter = 0
  const job = startPeriodic(async () => {
    calls += 1
    if (calls <= 3) throw new Error('redis down')
    return calls
  }, { intervalMs: 5, firstRunMs: 0, maxBackoffMs: 40, onError: () => {}, onSuccess: (_result, before) => { if (before > 0) recoveredAfter = before } })
  await until(() => recoveredAfter > 0, 'recovery')
  const atRecovery = calls
  await until(() => calls >= atRecovery + 3, 'three healthy runs')
  await job.stop()
  t.equal(recoveredAfter, 3)
})

t.test('stop waits for the run in progress and nothing runs after it', async (t) => {
  let runs = 0
  let finished = false
  const job = startPeriodic(async () => {
    runs += 1
    await new Promise((resolve) => setTimeout(resolve, 30))
    finished = true
  }, { intervalMs: 1, firstRunMs: 0, maxBackoffMs: 10, onError: () => {} })
  await until(() => runs === 1, 'the first run to start')
  await job.stop()
  t.ok(finished, 'the run in progress ended before stop resolved')
  const after = runs
  job.nudge(0)
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.equal(runs, after, 'no run after stop, even when nudged')
})
