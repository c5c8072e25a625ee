import t from 'tap'
import { repeatedTopLevelNames } from '../../lib/json-keys.js'

t.test('names repeated at the top level are found, however they are escaped', async (t) => {
  t.same(repeatedTopLevelNames('{"a":1,"b":2,"a":3}'), ['a'])
  t.same(repeatedTopLevelNames('{"client_secret":"x", "client\\u005fsecret":"y"}'), ['client_secret'], 'an escaped spelling is the same name')
  t.same(repeatedTopLevelNames('{"a":"\\"a\\":","a":1}'), ['a'], 'quotes inside a value are not names')
})

t.test('names inside nested objects and arrays, and values, are not top-level names', async (t) => {
  t.same(repeatedTopLevelNames('{"a":{"x":1,"x":2},"b":[{"y":1},{"y":2}],"c":"a"}'), [])
  t.same(repeatedTopLevelNames('["a","a"]'), [], 'not an object')
  t.same(repeatedTopLevelNames('{"a":1}'), [])
})
