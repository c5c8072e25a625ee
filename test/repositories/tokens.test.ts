import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build, seedAgent } from '../helper.js'
import { newSecret } from '../../services/secrets.js'
import { insertCredential } from '../../repositories/credentials.js'
import { recordIssuances } from '../../repositories/tokens.js'
import { currentMonth } from '../../services/issuance-log.js'

/**
 * The issuance write runs once per group commit on the token endpoint's hot path; it must cost the
 * same with 5,000 clients as with one. PostgreSQL guessed 100 rows for the batch and read the whole
 * credentials table in every batch instead of probing its primary key (issue 18: at 10,000 agents,
 * 10,000 rows read per batch). pg_stat_xact_user_tables counts this transaction's own scans.
 */
t.test('the issuance write probes credentials and agents by key, never scanning them, with thousands of clients', async (t) => {
  const app = await build(t)
  const { agent } = await seedAgent(app)
  const { credentialId, secretHash } = await newSecret()
  await insertCredential(app.pg, { credentialId, clientId: agent.agentId, secretHash, expiresAt: null })
  // 5,000 other agents with a credential each, and statistics that say so
  await app.pg.query(`
    WITH made AS (
      INSERT INTO agents (agent_id, email, agent_type, version, capabilities, owner, deployment_env)
      SELECT gen_random_uuid(), 'bulk-' || n || '@example.com', 'summarizer', '1.0.0', ARRAY['docs:read'], 'bulk', 'staging'
      FROM generate_series(1, 5000) AS n RETURNING agent_id)
    INSERT INTO credentials (credential_id, client_id, secret_hash) SELECT gen_random_uuid(), agent_id, 'not-a-hash' FROM made`)
  await app.pg.query('ANALYZE agents')
  await app.pg.query('ANALYZE credentials')
  const { rows: [{ ms }] } = await app.pg.query<{ ms: string }>(
    'SELECT (extract(epoch FROM tokens_valid_after) * 1000)::bigint AS ms FROM agents WHERE agent_id = $1', [agent.agentId])

  const client = await app.pg.pool.connect()
  t.teardown(() => client.release())
  await client.query('BEGIN')
  const outcome = await recordIssuances(client, [{
    event: { eventId: randomUUID(), agentId: agent.agentId, action: 'token.issued', outcome: 'success', ipAddress: '127.0.0.1', userAgent: null, metadata: {} },
    basis: { credentialId, secretHash, validAfterMs: Number(ms), scopes: [] }
  }], 0, currentMonth())
  const { rows } = await client.query<{ relname: string, seq_scan: string }>(
    "SELECT relname, seq_scan FROM pg_stat_xact_user_tables WHERE schemaname = current_schema() AND relname IN ('agents', 'credentials') ORDER BY relname")
  await client.query('ROLLBACK')

  t.same([...outcome.stale], [], 'the issuance is granted')
  t.same(rows.map((row) => [row.relname, Number(row.seq_scan)]), [['agents', 0], ['credentials', 0]], 'no sequential scan of either table')
})
