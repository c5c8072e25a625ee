import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build, seedAgent } from '../helper.js'
import { createIssuanceLog } from '../../services/issuance-log.js'
import { newSecret } from '../../services/secrets.js'
import { insertCredential } from '../../repositories/credentials.js'
import type { IssuanceRecord } from '../../repositories/tokens.js'

/**
 * The group commit shares one statement between many requests; a value PostgreSQL refuses in one
 * of them must fail that one only (issue 11, defect 2: one client's bad input failed 691 of 1,000
 * other agents' issuances). Here one record carries an address PostgreSQL can't store, among
 * twenty good ones queued at the same moment so they share batches.
 */
t.test('a member PostgreSQL refuses fails alone; every innocent member of its batch is issued', async (t) => {
  const app = await build(t)
  const log = createIssuanceLog({ pool: app.pg.pool, quota: 0, onWritten: () => {} })
  const records: IssuanceRecord[] = []
  for (let n = 0; n < 21; n += 1) {
    const { agent } = await seedAgent(app)
    const { credentialId, secretHash } = await newSecret()
    await insertCredential(app.pg, { credentialId, clientId: agent.agentId, secretHash, expiresAt: null })
    const validAfterMs = Number((await app.pg.query<{ ms: string }>(
      'SELECT (extract(epoch FROM tokens_valid_after) * 1000)::bigint AS ms FROM agents WHERE agent_id = $1', [agent.agentId])).rows[0].ms)
    records.push({
      event: {
        eventId: randomUUID(),
        agentId: agent.agentId,
        action: 'token.issued',
        outcome: 'success',
        ipAddress: n === 10 ? 'not an address' : '127.0.0.1',
        userAgent: null,
        metadata: { n }
      },
      basis: { credentialId, secretHash, validAfterMs, scopes: [] }
    })
  }

  const outcomes = await Promise.allSettled(records.map((record) => log.record(record)))

  t.equal(outcomes[10].status, 'rejected', 'the member at fault fails')
  const others = outcomes.filter((_, index) => index !== 10)
  t.same(others.map((outcome) => outcome.status === 'fulfilled' ? outcome.value : 'rejected'), others.map(() => 'issued'), 'all twenty others are issued')
  const { rows } = await app.pg.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_events WHERE action = 'token.issued'")
  t.equal(rows[0].n, 20, 'each issued member has its event, the failed one none')
})
