import t from 'tap'
import { sanitizeForwardedFor } from '../../lib/forwarded.js'

t.test('entries with ports, brackets or zones become bare addresses', async (t) => {
  t.equal(sanitizeForwardedFor('1.2.3.4:8080'), '1.2.3.4')
  t.equal(sanitizeForwardedFor('[::1]'), '::1')
  t.equal(sanitizeForwardedFor('[2001:db8::1]:443, 10.0.0.7'), '2001:db8::1, 10.0.0.7')
  t.equal(sanitizeForwardedFor('fe80::1%eth0'), 'fe80::1')
  t.equal(sanitizeForwardedFor(' 203.0.113.9 ,10.0.0.7 '), '203.0.113.9, 10.0.0.7', 'spacing normalised')
})

t.test('an entry with no address ends what can be believed: it and everything before it are dropped', async (t) => {
  t.equal(sanitizeForwardedFor('unknown'), '')
  t.equal(sanitizeForwardedFor('198.51.100.1, unknown, 10.0.0.7'), '10.0.0.7')
  t.equal(sanitizeForwardedFor('_hidden, 10.0.0.7'), '10.0.0.7', 'an RFC 7239 obfuscated identifier')
  t.equal(sanitizeForwardedFor('1.2.3.4.5'), '')
  t.equal(sanitizeForwardedFor(''), '')
})
