import t from 'tap'
import { redactLine } from '../../lib/redact.js'

/** lib/redact.ts on finished JSON lines: by key at any depth, by shape anywhere, nothing else touched. */

const line = (value: unknown) => JSON.stringify(value) + '\n'
const redacted = (value: unknown) => JSON.parse(redactLine(line(value))) as Record<string, unknown>

t.test('a line without anything suspect is returned as is', async (t) => {
  const plain = line({ level: 30, reqId: 'abc', route: '/api/v1/agents', statusCode: 200, msg: 'request completed' })
  t.equal(redactLine(plain), plain)
  const token = line({ level: 30, route: '/api/v1/token', url: '/api/v1/token', token_type_hint: 'refresh', msg: 'request completed' })
  t.equal(redactLine(token), token, 'mentions of tokens that are not token values')
})

t.test('secret keys are blanked at any depth, whatever their value', async (t) => {
  t.same(redacted({ token: 'a', x: { client_secret: 'b', y: [{ accessToken: 'c' }, { z: { AUTHORIZATION: 'd' } }] } }),
    { token: '[redacted]', x: { client_secret: '[redacted]', y: [{ accessToken: '[redacted]' }, { z: { AUTHORIZATION: '[redacted]' } }] } })
  t.same(redacted({ secrets: { a: 1, b: [1, 2, { c: '}' }] }, after: 'kept' }), { secrets: '[redacted]', after: 'kept' }, 'an object value, braces in strings included')
  t.same(redacted({ password: null, 'set-cookie': ['a=1', 'b=2'], cookie: 5, 'x-api-key': true }),
    { password: '[redacted]', 'set-cookie': '[redacted]', cookie: '[redacted]', 'x-api-key': '[redacted]' })
  t.same(redacted({ JWT_PRIVATE_KEY: 'k', VAULT_TOKEN: 'v', DATABASE_URL: 'postgres://u:p@h/d', secret_hash: 'h' }),
    { JWT_PRIVATE_KEY: '[redacted]', VAULT_TOKEN: '[redacted]', DATABASE_URL: '[redacted]', secret_hash: '[redacted]' })
})

t.test('a key-like text inside a string value is not mistaken for a key', async (t) => {
  t.same(redacted({ msg: 'said "token":"x", then {"secret":1}', n: 1 }), { msg: 'said "token":"x", then {"secret":1}', n: 1 })
})

t.test('secret shapes are blanked anywhere: client secrets, JWTs, Basic and Bearer credentials', async (t) => {
  const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln'
  const out = redactLine(line({ msg: `got sk_live_AbC-123_xyz and ${jwt}`, note: 'Authorization: Basic dXNlcjpwdw== / bearer abc.def', stack: `Error at /token?t=${jwt}` }))
  t.notMatch(out, /AbC-123_xyz|dXNlcjpwdw|abc\.def|eyJ/)
  t.match(out, /sk_live_\[redacted\]/)
  t.match(out, /\[redacted-jwt\]/)
  t.match(out, /Basic \[redacted\]/)
  t.match(out, /bearer \[redacted\]/)
  t.doesNotThrow(() => JSON.parse(out), 'still one JSON object')
})

t.test('the fields every line now carries pass untouched; a gcp line\'s message is scanned like msg', async (t) => {
  const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
  const plain = line({ severity: 'INFO', level: 'info', time: '2026-11-29T10:00:00.000Z', service: 'agentidp', version: '0.1.0', traceparent, traceId: '4bf92f3577b34da6a3ce929d0e0e4736', message: 'request completed' })
  t.equal(redactLine(plain), plain)
  t.same(redacted({ severity: 'ERROR', message: 'got Bearer abc.def.ghi', token: 'x', traceparent }),
    { severity: 'ERROR', message: 'got Bearer [redacted]', token: '[redacted]', traceparent })
})

t.test('a secret or a token percent-encoded (in a logged URL) is blanked too', async (t) => {
  const secret = 'sk_live_AbC-123_xyzAbC-123_xyzAbC-123_xyz'
  const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl'
  const every = (text: string) => [...text].map((char) => `%${char.charCodeAt(0).toString(16).padStart(2, '0')}`).join('')
  for (const url of [`/api/v1/agents/${every(secret)}`, `/api/v1/agents/sk%5Flive%5F${secret.slice(8)}`, `/x?t=${every(jwt)}&y=1`, `/x/${encodeURIComponent(jwt).replace(/\./g, '%2E')}`]) {
    const out = redactLine(line({ msg: 'request completed', url }))
    t.notMatch(out, /AbC-123|c2lnbmF0dXJl|%41%62%43|%63%32%6c/i, `blanked: ${url.slice(0, 40)}`)
    t.doesNotThrow(() => JSON.parse(out), 'still one JSON object')
  }
  const harmless = line({ msg: 'request completed', url: '/api/v1/agents?owner=team%20a&x=%ED%A0%80' })
  t.equal(redactLine(harmless), harmless, 'other percent-encoded text is kept as it is')
})
