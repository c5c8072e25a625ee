import t from 'tap'
import { canonicalInstant, instantMs } from '../../lib/instant.js'
import { ProblemError } from '../../lib/errors.js'

t.test('RFC 3339 spellings Date.parse refuses still have their one meaning', async (t) => {
  t.equal(instantMs('2026-06-30T23:59:60Z'), Date.parse('2026-07-01T00:00:00Z'), 'a leap second is the next minute\'s first instant')
  t.equal(instantMs('2026-01-01T00:00:00+00'), Date.parse('2026-01-01T00:00:00Z'), 'an offset without minutes')
  t.equal(instantMs('2026-01-01T01:00:00+0100'), Date.parse('2026-01-01T00:00:00Z'), 'an offset without a colon')
  t.equal(instantMs('2026-01-01t00:00:00.123456789z'), Date.parse('2026-01-01T00:00:00.123Z'), 'lower-case T and Z, nanoseconds')
})

t.test('offsets PostgreSQL would refuse, impossible dates and year 0 are no instant', async (t) => {
  for (const text of ['2026-01-01T00:00:00+16:00', '2026-01-01T00:00:00-23:59', '2026-01-01T00:00:00+15:60', '2026-02-30T00:00:00Z',
    '2026-01-01T24:00:00Z', '0000-06-01T00:00:00Z', '0001-01-01T00:00:00+01:00', '2026-01-01', 'yesterday']) {
    t.equal(instantMs(text), null, text)
  }
  t.equal(instantMs('2026-01-01T00:00:00+15:59'), Date.parse('2025-12-31T08:01:00Z'), '±15:59 is the widest offset kept')
})

t.test('canonicalInstant answers a 400 naming the field, or the UTC text', async (t) => {
  t.equal(canonicalInstant('2026-01-01T02:00:00+02:00', 'body.expiresAt'), '2026-01-01T00:00:00.000Z')
  let refused: unknown = null
  try {
    canonicalInstant('2026-01-01T00:00:00+16:00', 'body.expiresAt')
  } catch (error) {
    refused = error
  }
  t.ok(refused instanceof ProblemError, 'a problem, not a crash')
  t.match(refused, { statusCode: 400, code: 'VALIDATION_ERROR', errors: [{ field: 'body.expiresAt' }] })
})
