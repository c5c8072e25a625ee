import t from 'tap'
import { illFormedStringPath } from '../../lib/unicode.js'

t.test('the first ill-formed string or member name is named by its path, in document order', async (t) => {
  t.equal(illFormedStringPath({ a: 'ok', b: ['x', '\ud800'], c: '\udfff' }), 'body.b.1')
  t.equal(illFormedStringPath({ a: { '\ud800': 1 }, b: '\ud800' }), 'body.a.\ud800')
  t.equal(illFormedStringPath({ a: 'fine', b: [1, null, true, { c: '☃ 𝄞' }] }), null, 'well-formed text, astral characters included')
  t.equal(illFormedStringPath('\ud800', 'query'), 'query')
})

t.test('a body nested far deeper than the call stack allows is judged, not a RangeError (a 500)', async (t) => {
  let deep: unknown = '\ud800'
  for (let depth = 0; depth < 100_000; depth += 1) deep = [deep]
  t.equal(illFormedStringPath(JSON.parse(JSON.stringify({ x: 1 }))), null)
  t.match(illFormedStringPath({ deep }), /^body\.deep(\.0)+$/)
  t.equal(illFormedStringPath(JSON.parse('['.repeat(20_000) + ']'.repeat(20_000))), null)
})
