import t from 'tap'
import { bearerToken, parseAuthorization } from '../../lib/authorization.js'

t.test('an absent or empty header is no authorization at all', async (t) => {
  t.equal(parseAuthorization(undefined), null)
  t.equal(parseAuthorization(''), null)
})

t.test('the scheme is case-insensitive and the token68 is kept as sent', async (t) => {
  t.same(parseAuthorization('Bearer abc.DEF-_~+/=='), { scheme: 'bearer', credentials: 'abc.DEF-_~+/==' })
  t.same(parseAuthorization('bAsIc dXNlcjpwYXNz'), { scheme: 'basic', credentials: 'dXNlcjpwYXNz' })
  t.same(parseAuthorization('Bearer   spaced  '), { scheme: 'bearer', credentials: 'spaced' }, 'extra spaces around the token are tolerated')
})

t.test('anything that is not a token68 after the scheme is malformed, never a token', async (t) => {
  for (const header of ['Bearer', 'Bearer ', 'Bearer a b', 'Bearer a=b', 'Bearer ab$', 'Bearer "quoted"', ' Bearer abc', 'Bearer\tabc']) {
    const parsed = parseAuthorization(header)
    t.equal(parsed?.credentials ?? null, null, JSON.stringify(header))
  }
})

t.test('bearerToken gives the token of a Bearer header and null for anything else', async (t) => {
  t.equal(bearerToken('Bearer eyJ.abc.def'), 'eyJ.abc.def')
  t.equal(bearerToken('Basic dXNlcjpwYXNz'), null)
  t.equal(bearerToken('Bearer bad token'), null)
  t.equal(bearerToken(undefined), null)
})
