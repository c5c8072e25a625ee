import t from 'tap'
import { createGroupCommit } from '../../lib/group-commit.js'

/** A write the test finishes by hand: what each call was given, and a way to end it. */
function manualWrites () {
  const calls: Array<{ batch: number[], finish: (error?: Error) => void }> = []
  return {
    calls,
    write (batch: number[]): Promise<string[]> {
      return new Promise((resolve, reject) => {
        calls.push({ batch, finish: (error) => { if (error === undefined) resolve(batch.map((n) => `done ${n}`)); else reject(error) } })
      })
    }
  }
}

const settled = async () => { for (let n = 0; n < 5; n += 1) await new Promise((resolve) => setImmediate(resolve)) }

t.test('items arriving while a write is in flight go together in the next write; each is answered only after its own', async (t) => {
  const writes = manualWrites()
  const commits = createGroupCommit({ write: writes.write, isDependencyFailure: () => false, maxBatch: 10 })
  const answered: string[] = []
  const first = commits.submit(1).then((result) => { answered.push(result) })
  const rest = [2, 3, 4].map((n) => commits.submit(n).then((result) => { answered.push(result) }))
  await settled()
  t.same(writes.calls.map((call) => call.batch), [[1]], 'one write in flight; the others wait')
  writes.calls[0].finish()
  await first
  await settled()
  t.same(answered, ['done 1'], 'the second batch is not answered before its write')
  t.same(writes.calls.map((call) => call.batch), [[1], [2, 3, 4]], 'the waiting items went together')
  writes.calls[1].finish()
  await Promise.all(rest)
  t.same(answered, ['done 1', 'done 2', 'done 3', 'done 4'])
})

t.test('a batch is at most maxBatch items', async (t) => {
  const writes = manualWrites()
  const commits = createGroupCommit({ write: writes.write, isDependencyFailure: () => false, maxBatch: 2 })
  const all = [1, 2, 3, 4, 5].map((n) => commits.submit(n))
  for (let n = 0; n < 4; n += 1) {
    await settled()
    writes.calls[n]?.finish()
  }
  t.same(await Promise.all(all), ['done 1', 'done 2', 'done 3', 'done 4', 'done 5'])
  t.same(writes.calls.map((call) => call.batch), [[1], [2, 3], [4, 5]])
})

t.test('a failed batch is written again member by member: only the member at fault fails', async (t) => {
  const commits = createGroupCommit({
    write: async (batch: number[]) => {
      if (batch.includes(13)) throw new Error('refused value')
      return batch.map((n) => n * 2)
    },
    isDependencyFailure: () => false,
    maxBatch: 10
  })
  const blocker = commits.submit(1)
  const outcomes = await Promise.allSettled([12, 13, 14].map((n) => commits.submit(n)))
  t.equal(await blocker, 2)
  t.same(outcomes.map((outcome) => outcome.status), ['fulfilled', 'rejected', 'fulfilled'])
  t.same(outcomes.flatMap((outcome) => outcome.status === 'fulfilled' ? [outcome.value] : []), [24, 28])
})

t.test('a dependency failure fails the whole batch at once, with no retries', async (t) => {
  let writes = 0
  const down = Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' })
  const commits = createGroupCommit({
    write: async (batch: number[]) => { writes += 1; if (batch.length > 1) throw down; return batch },
    isDependencyFailure: (error) => error === down,
    maxBatch: 10
  })
  const blocker = commits.submit(0)
  const outcomes = await Promise.allSettled([1, 2, 3].map((n) => commits.submit(n)))
  t.same(await blocker, 0)
  t.same(outcomes.map((outcome) => outcome.status), ['rejected', 'rejected', 'rejected'])
  t.equal(writes, 2, 'the first write and the failed batch; none member by member')
})
