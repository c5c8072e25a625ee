import { randomUUID } from 'node:crypto'
import t from 'tap'
import { agentBody, build, seedAdmin } from '../../helper.js'
import { insertCredential } from '../../../repositories/credentials.js'
import { AGENTS, agentUrl, assertProblem } from './support.js'

interface Row { action: string, agent_id: string | null, outcome: string, ip_address: string | null, user_agent: string | null, metadata: Record<string, unknown> }

t.test('an agent\'s life writes exactly one event per state change, each naming the target and the caller', async (t) => {
  const app = await build(t)
  const admin = await seedAdmin(app)
  const headers = { ...admin.headers, 'user-agent': 'audit-test/1.0' }

  const created = await app.inject({ method: 'POST', url: AGENTS, headers, payload: agentBody({ capabilities: ['docs:read'] }) })
  t.equal(created.statusCode, 201, created.body)
  const agentId: string = created.json().agentId
  const url = agentUrl(agentId)
  t.equal((await app.inject({ method: 'PATCH', url, headers, payload: { version: '1.1.0', deploymentEnv: 'production' } })).statusCode, 200)
  t.equal((await app.inject({ method: 'PATCH', url, headers, payload: { status: 'suspended' } })).statusCode, 200)
  t.equal((await app.inject({ method: 'PATCH', url, headers, payload: { status: 'active' } })).statusCode, 200)
  const credentials = [randomUUID(), randomUUID()]
  for (const credentialId of credentials) {
    await insertCredential(app.pg, { credentialId, clientId: agentId, secretHash: 'placeholder', expiresAt: null })
  }
  t.equal((await app.inject({ method: 'DELETE', url, headers })).statusCode, 204)
  assertProblem(t, await app.inject({ method: 'DELETE', url, headers }), 409, 'AGENT_ALREADY_DECOMMISSIONED')

  const { rows } = await app.pg.query<Row>(
    'SELECT action, agent_id, outcome, host(ip_address) AS ip_address, user_agent, metadata FROM audit_events WHERE agent_id = $1 ORDER BY created_at, action', [agentId])
  t.same(rows.map((row) => row.action), [
    'agent.created', 'agent.updated', 'agent.suspended', 'agent.reactivated', 'agent.decommissioned', 'credential.revoked', 'credential.revoked'
  ])
  for (const row of rows) {
    t.equal(row.outcome, 'success', `${row.action} succeeded`)
    t.equal(row.metadata.actorId, admin.agent.agentId, `${row.action} names the caller`)
    t.equal(row.user_agent, 'audit-test/1.0', `${row.action} records the user agent`)
    t.type(row.ip_address, 'string', `${row.action} records the caller's address`)
  }
  t.same((rows[1].metadata.changed as string[]).sort(), ['deploymentEnv', 'version'])
  t.match(rows[2].metadata, { from: 'active', to: 'suspended' })
  t.match(rows[3].metadata, { from: 'suspended', to: 'active' })
  t.same(rows.slice(5).map((row) => row.metadata.credentialId).sort(), [...credentials].sort())
})

t.test('no audit event carries the bearer token or a secret', async (t) => {
  const app = await build(t)
  const admin = await seedAdmin(app)
  const created = await app.inject({ method: 'POST', url: AGENTS, headers: admin.headers, payload: agentBody() })
  await app.inject({ method: 'PATCH', url: agentUrl(created.json().agentId), headers: admin.headers, payload: { owner: 'x' } })
  await app.inject({ method: 'GET', url: AGENTS, headers: { authorization: `${admin.headers.authorization}x` } })
  const { rows } = await app.pg.query<{ text: string }>('SELECT row_to_json(audit_events)::text AS text FROM audit_events')
  t.ok(rows.length >= 3)
  const token = admin.headers.authorization.slice('Bearer '.length)
  const signature = token.split('.')[2]
  t.notOk(rows.some((row) => row.text.includes(signature)), 'no token signature in any event')
  t.notOk(rows.some((row) => /sk_live_|eyJ[\w-]+\.eyJ/.test(row.text)), 'nothing shaped like a secret or a JWT')
})
