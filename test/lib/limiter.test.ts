import t from 'tap'
import { createKeyedLimiter, createLimiter } from '../../lib/limiter.js'
import { OverloadedError } from '../../lib/errors.js'

function deferred () {
  let resolve!: () => void
  const promise = new Promise<void>((done) => { resolve = done })
  return { promise, resolve }
}

t.test('never runs more tasks at once than its concurrency', async (t) => {
  const limiter = createLimiter(2, 100)
  let running = 0
  let peak = 0
  await Promise.all(Array.from({ length: 20 }, () => limiter.run(async () => {
    running += 1
    peak = Math.max(peak, running)
    await new Promise((resolve) => setTimeout(resolve, 2))
    running -= 1
  })))
  t.equal(peak, 2)
})

t.test('refuses a task at once when the queue is full, and runs it again once there is room', async (t) => {
  const limiter = createLimiter(1, 1)
  const gate = deferred()
  const first = limiter.run(() => gate.promise)
  const queued = limiter.run(async () => 'queued')
  await t.rejects(limiter.run(async () => 'overflow'), OverloadedError)
  gate.resolve()
  await first
  t.equal(await queued, 'queued')
  t.equal(await limiter.run(async () => 'later'), 'later')
})

t.test('a failing task frees its slot', async (t) => {
  const limiter = createLimiter(1, 0)
  await t.rejects(limiter.run(async () => { throw new Error('boom') }), /boom/)
  t.equal(await limiter.run(async () => 'next'), 'next')
})

t.test('an overloaded limiter is answered as 503', async (t) => {
  t.equal(new OverloadedError().statusCode, 503)
})

t.test('a keyed limiter bounds each key on its own: one busy key neither exceeds its concurrency nor delays another', async (t) => {
  const limiter = createKeyedLimiter(1, 100)
  const gate = deferred()
  let busyRunning = 0
  let busyPeak = 0
  const busy = Array.from({ length: 10 }, () => limiter.run('198.51.100.1', async () => {
    busyRunning += 1
    busyPeak = Math.max(busyPeak, busyRunning)
    await gate.promise
    busyRunning -= 1
  }))
  // the busy key's first task holds its only slot; another key runs at once all the same
  t.equal(await limiter.run('203.0.113.1', async () => 'other'), 'other')
  t.equal(limiter.size, 1, 'only the busy key is still tracked')
  gate.resolve()
  await Promise.all(busy)
  t.equal(busyPeak, 1)
  t.equal(limiter.size, 0, 'an idle key is forgotten')
})

t.test('a keyed limiter refuses at once past one key\'s queue, not past the others\'', async (t) => {
  const limiter = createKeyedLimiter(1, 1)
  const gate = deferred()
  const first = limiter.run('a', () => gate.promise)
  const queued = limiter.run('a', async () => 'queued')
  await t.rejects(limiter.run('a', async () => 'overflow'), OverloadedError)
  t.equal(await limiter.run('b', async () => 'b'), 'b')
  gate.resolve()
  await first
  t.equal(await queued, 'queued')
})
