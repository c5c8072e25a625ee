import t from 'tap'
import { build, seedAgent, tokenIdFor } from '../helper.js'
import { pruneExpiredRevocations, recordRevokedToken } from '../../repositories/tokens.js'

t.test('pruning deletes exactly the revocations of tokens expired over an hour ago', async (t) => {
  const app = await build(t)
  const { agent } = await seedAgent(app)
  const now = Math.floor(Date.now() / 1000)
  const revocation = async (expiresAt: number) => ({ jti: await tokenIdFor(app, agent.agentId), expiresAt })
  const old = [await revocation(now - 7200), await revocation(now - 3700)]
  const keep = [await revocation(now - 3500), await revocation(now + 3600)]
  for (const item of [...old, ...keep]) t.ok(await recordRevokedToken(app.pg, item.jti, agent.agentId, item.expiresAt))
  t.notOk(await recordRevokedToken(app.pg, keep[0].jti, agent.agentId, keep[0].expiresAt), 'revoking twice records once')

  t.equal(await pruneExpiredRevocations(app.pg, 1), 1, 'one bounded batch at a time')
  t.equal(await pruneExpiredRevocations(app.pg, 100), 1)
  t.equal(await pruneExpiredRevocations(app.pg, 100), 0)
  const { rows } = await app.pg.query<{ jti: string }>('SELECT jti FROM revoked_tokens ORDER BY expires_at')
  t.same(rows.map((row) => row.jti), keep.map((item) => item.jti))
})
