import t from 'tap'
import { createLimiter } from '../../lib/limiter.js'
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
