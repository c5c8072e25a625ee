import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build, seedAgent, seedCredential } from '../helper.js'
import { insertIssuedTokens, pruneExpiredTokens } from '../../routes/oauth/repository.js'

t.test('pruning deletes exactly the records of tokens expired over an hour ago', async (t) => {
  const app = await build(t)
  const { agent } = await seedAgent(app)
  const credentialId = await seedCredential(app, agent.agentId)
  const now = Math.floor(Date.now() / 1000)
  const record = (expiresAt: number) => ({
    jti: randomUUID(), agentId: agent.agentId, credentialId, scope: 'docs:read', audience: 'http://idp.test', issuedAt: expiresAt - 3600, expiresAt
  })
  const old = [record(now - 7200), record(now - 3700)]
  const keep = [record(now - 3500), record(now + 3600)]
  await insertIssuedTokens(app.pg, [...old, ...keep])

  t.equal(await pruneExpiredTokens(app.pg, 1), 1, 'one bounded batch at a time')
  t.equal(await pruneExpiredTokens(app.pg, 100), 1)
  t.equal(await pruneExpiredTokens(app.pg, 100), 0)
  const { rows } = await app.pg.query<{ jti: string }>('SELECT jti FROM issued_tokens ORDER BY expires_at')
  t.same(rows.map((row) => row.jti).filter((jti) => [...old, ...keep].some((item) => item.jti === jti)), keep.map((item) => item.jti))
})
