import { randomUUID } from 'node:crypto'
import t from 'tap'
import { credentialOfTokenId, newTokenId } from '../../lib/token-id.js'

t.test('a token id names its credential and is unique', async (t) => {
  const credentialId = randomUUID()
  const ids = new Set(Array.from({ length: 1000 }, () => newTokenId(credentialId)))
  t.equal(ids.size, 1000)
  for (const id of ids) t.equal(credentialOfTokenId(id), credentialId)
})

t.test('anything else names no credential', async (t) => {
  for (const id of [randomUUID(), '', 'x'.repeat(43) + '=', 'a.b.c', 'ab'.repeat(40)]) {
    t.equal(credentialOfTokenId(id), null, id)
  }
})
