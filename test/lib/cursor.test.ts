import t from 'tap'
import { decodeCursor, encodeCursor } from '../../lib/cursor.js'
import { ProblemError } from '../../lib/errors.js'

t.test('a cursor carries the exact microsecond timestamp and id back', async (t) => {
  const keyset = { createdAt: '2026-11-27T10:00:00.123456Z', id: '0b7d3f0e-6a0c-4f3c-9d53-1f6a3c2b9e11' }
  t.same(decodeCursor(encodeCursor(keyset)), keyset)
})

t.test('anything else is a 400 VALIDATION_ERROR naming the cursor', async (t) => {
  const forged = [
    'not-base64-json',
    Buffer.from('["2026-11-27T10:00:00Z"]').toString('base64url'),
    Buffer.from('["yesterday","0b7d3f0e-6a0c-4f3c-9d53-1f6a3c2b9e11"]').toString('base64url'),
    Buffer.from('["2026-11-27T10:00:00Z","1 OR 1=1"]').toString('base64url')
  ]
  for (const cursor of forged) {
    try {
      decodeCursor(cursor)
      t.fail(`accepted ${cursor}`)
    } catch (error) {
      t.ok(error instanceof ProblemError && error.statusCode === 400 && error.code === 'VALIDATION_ERROR', cursor)
      t.equal((error as ProblemError).errors?.[0].field, 'querystring.cursor')
    }
  }
})
