import t from 'tap'
import { issuedBeforeValidAfter, issueSecond } from '../../lib/token-time.js'

t.test('a token issued in the second of a suspension, before it, is dead', async (t) => {
  t.ok(issuedBeforeValidAfter(100, 100_500))
  t.ok(issuedBeforeValidAfter(99, 100_000) && !issuedBeforeValidAfter(100, 100_000))
})

t.test('a token issued after reactivation in the same second is stamped with the next second and lives', async (t) => {
  const validAfterMs = 100_500
  const iat = issueSecond(100_900, validAfterMs)
  t.equal(iat, 101)
  t.notOk(issuedBeforeValidAfter(iat, validAfterMs))
})

t.test('an agent never suspended gets the current second', async (t) => {
  t.equal(issueSecond(1_700_000_000_123, 0), 1_700_000_000)
})
