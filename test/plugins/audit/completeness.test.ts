import { randomUUID } from 'node:crypto'
import t from 'tap'
import { agentBody, build, mintToken, seedAdmin, seedAgent, type TestApp } from '../../helper.js'
import { insertCredential } from '../../../repositories/credentials.js'
import { generateSecret, hashSecret } from '../../../services/secrets.js'
import type { Tap } from '../../routes/agents/support.js'
import { basic, credentialsUrl, credentialUrl, INTROSPECT, oauthPost, REVOKE, requestToken, TOKEN } from '../../routes/oauth/support.js'

/**
 * API.md, "Audit events": every action writes exactly one event, about the right agent (agentId =
 * the target), naming the caller (metadata.actorId), with the right outcome — and nothing else is
 * written by the same request. Each test runs one request and looks at everything it added.
 */
const app = await build(t, { env: { RATE_LIMIT_TOKEN_PER_CLIENT: '0', RATE_LIMIT_AUTH_FAILURES_PER_IP: '0', TOKEN_MONTHLY_QUOTA: '0' } })
const admin = await seedAdmin(app)
const admins = { ...admin.headers, 'user-agent': 'completeness/1' }

interface Event { event_id: string, agent_id: string | null, action: string, outcome: string, ip_address: string | null, user_agent: string | null, metadata: Record<string, unknown> }

async function eventIds (target: TestApp): Promise<Set<string>> {
  return new Set((await target.pg.query<{ event_id: string }>('SELECT event_id FROM audit_events')).rows.map((row) => row.event_id))
}

/** Runs `act` and returns every event it added (in order). */
async function added (target: TestApp, act: () => Promise<unknown>): Promise<Event[]> {
  const before = await eventIds(target)
  await act()
  const { rows } = await target.pg.query<Event>(
    'SELECT event_id, agent_id, action, outcome, host(ip_address) AS ip_address, user_agent, metadata FROM audit_events ORDER BY created_at, action, event_id')
  return rows.filter((row) => !before.has(row.event_id))
}

/** Exactly one event, matching `expected`; every event has an address, and no metadata carries a secret or a token. */
function one (t: Tap, events: Event[], expected: Partial<Event> & { metadata?: Record<string, unknown> }): Event {
  t.equal(events.length, 1, `exactly one event (${events.map((event) => event.action).join(', ')})`)
  t.match(events[0], expected)
  t.type(events[0]?.ip_address, 'string', 'the caller\'s address')
  t.notMatch(JSON.stringify(events[0]?.metadata ?? {}), /sk_live_|eyJ[\w-]+\./, 'no secret or token in metadata')
  return events[0]
}

const state: { agentId?: string, credentialId?: string, secret?: string, token?: string } = {}

t.test('agent.created', async (t) => {
  const events = await added(app, async () => {
    const res = await app.inject({ method: 'POST', url: '/api/v1/agents', headers: admins, payload: agentBody({ capabilities: ['docs:read', 'tokens:read'] }) })
    state.agentId = res.json().agentId
  })
  one(t, events, { action: 'agent.created', agent_id: state.agentId, outcome: 'success', user_agent: 'completeness/1', metadata: { actorId: admin.agent.agentId } })
})

t.test('agent.updated', async (t) => {
  const events = await added(app, () => app.inject({ method: 'PATCH', url: `/api/v1/agents/${state.agentId}`, headers: admins, payload: { version: '1.2.0' } }))
  one(t, events, { action: 'agent.updated', agent_id: state.agentId, outcome: 'success', metadata: { actorId: admin.agent.agentId, changed: ['version'] } })
})

t.test('agent.suspended, then agent.reactivated', async (t) => {
  const url = `/api/v1/agents/${state.agentId}`
  one(t, await added(app, () => app.inject({ method: 'PATCH', url, headers: admins, payload: { status: 'suspended' } })),
    { action: 'agent.suspended', agent_id: state.agentId, metadata: { actorId: admin.agent.agentId, from: 'active', to: 'suspended' } })
  one(t, await added(app, () => app.inject({ method: 'PATCH', url, headers: admins, payload: { status: 'active' } })),
    { action: 'agent.reactivated', agent_id: state.agentId, metadata: { actorId: admin.agent.agentId, from: 'suspended', to: 'active' } })
})

t.test('credential.generated', async (t) => {
  const events = await added(app, async () => {
    const res = await app.inject({ method: 'POST', url: credentialsUrl(state.agentId as string), headers: admins })
    state.credentialId = res.json().credentialId
  })
  one(t, events, { action: 'credential.generated', agent_id: state.agentId, metadata: { actorId: admin.agent.agentId, credentialId: state.credentialId } })
})

t.test('credential.rotated', async (t) => {
  const events = await added(app, async () => {
    const res = await app.inject({ method: 'POST', url: `${credentialUrl(state.agentId as string, state.credentialId as string)}/rotate`, headers: admins })
    state.secret = res.json().clientSecret
  })
  one(t, events, { action: 'credential.rotated', agent_id: state.agentId, metadata: { actorId: admin.agent.agentId, credentialId: state.credentialId } })
})

t.test('token.issued (the caller is the client itself)', async (t) => {
  const client = { agentId: state.agentId as string, secret: state.secret as string }
  const events = await added(app, async () => { state.token = (await requestToken(app, client, { fields: { scope: 'docs:read' } })).json().access_token })
  const event = one(t, events, { action: 'token.issued', agent_id: state.agentId, metadata: { actorId: state.agentId, credentialId: state.credentialId, scope: 'docs:read', authMethod: 'client_secret_basic' } })
  t.type(event.metadata.jti, 'string')
})

t.test('token.introspected: about the token\'s agent, by the caller', async (t) => {
  one(t, await added(app, () => oauthPost(app, INTROSPECT, { fields: { token: state.token }, headers: admins })),
    { action: 'token.introspected', agent_id: state.agentId, metadata: { actorId: admin.agent.agentId, active: true } })
  one(t, await added(app, () => oauthPost(app, INTROSPECT, { fields: { token: 'not-a-token' }, headers: admins })),
    { action: 'token.introspected', agent_id: null, metadata: { actorId: admin.agent.agentId, active: false } })
})

t.test('token.revoked, once; revoking again records nothing', async (t) => {
  one(t, await added(app, () => oauthPost(app, REVOKE, { fields: { token: state.token }, headers: admins })),
    { action: 'token.revoked', agent_id: state.agentId, metadata: { actorId: admin.agent.agentId } })
  t.same(await added(app, () => oauthPost(app, REVOKE, { fields: { token: state.token }, headers: admins })), [])
})

t.test('credential.revoked', async (t) => {
  one(t, await added(app, () => app.inject({ method: 'DELETE', url: credentialUrl(state.agentId as string, state.credentialId as string), headers: admins })),
    { action: 'credential.revoked', agent_id: state.agentId, metadata: { actorId: admin.agent.agentId, credentialId: state.credentialId } })
})

t.test('agent.decommissioned, plus one credential.revoked per credential it revokes', async (t) => {
  const credentials = [randomUUID(), randomUUID()]
  for (const credentialId of credentials) await insertCredential(app.pg, { credentialId, clientId: state.agentId as string, secretHash: 'x', expiresAt: null })
  const events = await added(app, () => app.inject({ method: 'DELETE', url: `/api/v1/agents/${state.agentId}`, headers: admins }))
  t.same(events.map((event) => event.action), ['agent.decommissioned', 'credential.revoked', 'credential.revoked'])
  t.ok(events.every((event) => event.agent_id === state.agentId && event.metadata.actorId === admin.agent.agentId))
  t.same(events.slice(1).map((event) => event.metadata.credentialId).sort(), credentials.sort())
})

t.test('auth.failed, with the reason, naming the claimed agent only when it exists', async (t) => {
  const victim = await seedAgent(app, { capabilities: ['docs:read'] })
  const agentId = victim.agent.agentId
  const revokedId = randomUUID()
  await insertCredential(app.pg, { credentialId: revokedId, clientId: agentId, secretHash: 'x', expiresAt: null })
  await app.pg.query("UPDATE credentials SET status = 'revoked' WHERE credential_id = $1", [revokedId])
  const activeId = randomUUID()
  await insertCredential(app.pg, { credentialId: activeId, clientId: agentId, secretHash: await hashSecret(generateSecret(activeId)), expiresAt: null })
  const expired = await mintToken(app, agentId, { iat: Math.floor(Date.now() / 1000) - 7200, exp: Math.floor(Date.now() / 1000) - 3600 })
  const cases: Array<[string, () => Promise<unknown>, string | null, string]> = [
    ['unknown client', () => requestToken(app, { agentId: randomUUID(), secret: 'sk_live_AAAA' }), null, 'malformed_secret'],
    ['a secret naming no credential', () => requestToken(app, { agentId, secret: `sk_live_${Buffer.alloc(48, 1).toString('base64url')}` }), agentId, 'unknown_client'],
    ['bad secret', () => requestToken(app, { agentId, secret: generateSecret(activeId) }), agentId, 'bad_secret'],
    ['revoked credential', () => requestToken(app, { agentId, secret: generateSecret(revokedId) }), agentId, 'revoked_credential'],
    ['no client credentials', () => oauthPost(app, TOKEN, { fields: { grant_type: 'client_credentials' } }), null, 'no_client_credentials'],
    ['expired token', () => app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${expired}` } }), agentId, 'expired_token'],
    ['bad signature', () => app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${victim.token.slice(0, -6)}AAAAAA` } }), agentId, 'bad_signature'],
    ['missing token', () => app.inject({ method: 'GET', url: '/api/v1/agents' }), null, 'missing_token'],
    ['not a Bearer header', () => app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: 'Token abc' } }), null, 'malformed_authorization'],
    ['bad Bearer on introspection', () => oauthPost(app, INTROSPECT, { fields: { token: 'x' }, headers: { authorization: `Bearer ${expired}` } }), agentId, 'expired_token'],
    ['bad secret on introspection', () => oauthPost(app, INTROSPECT, { fields: { token: 'x' }, headers: { authorization: basic(agentId, 'sk_live_nope') } }), agentId, 'malformed_secret']
  ]
  for (const [label, act, target, reason] of cases) {
    t.test(label, async (t) => {
      one(t, await added(app, act), { action: 'auth.failed', outcome: 'failure', agent_id: target, metadata: { reason } })
    })
  }
})

t.test('access.denied for every refusal: scope, visibility, escalation, ownership', async (t) => {
  const caller = await seedAgent(app, { capabilities: ['docs:read', 'agents:read'] })
  const other = await seedAgent(app, { capabilities: ['docs:read'] })
  const nobody = await seedAgent(app, { capabilities: ['docs:read'] })
  const cases: Array<[string, () => Promise<unknown>, string, string, string]> = [
    ['a collection without its scope (403)', () => app.inject({ method: 'GET', url: '/api/v1/audit', headers: caller.headers }), caller.agent.agentId, caller.agent.agentId, 'insufficient_scope'],
    ['another agent\'s resource without the scope (404)', () => app.inject({ method: 'GET', url: `/api/v1/agents/${other.agent.agentId}`, headers: nobody.headers }), other.agent.agentId, nobody.agent.agentId, 'not_visible'],
    ['a write without its scope (403)', () => app.inject({ method: 'PATCH', url: `/api/v1/agents/${other.agent.agentId}`, headers: caller.headers, payload: { version: '2.0.0' } }), other.agent.agentId, caller.agent.agentId, 'insufficient_scope']
  ]
  for (const [label, act, target, actor, reason] of cases) {
    t.test(label, async (t) => {
      one(t, await added(app, act), { action: 'access.denied', outcome: 'failure', agent_id: target, metadata: { actorId: actor, reason } })
    })
  }
  t.test('granting a scope the caller does not hold', async (t) => {
    const limited = await seedAgent(app, { capabilities: ['agents:write'] })
    one(t, await added(app, () => app.inject({ method: 'POST', url: '/api/v1/agents', headers: limited.headers, payload: agentBody({ capabilities: ['audit:read'] }) })),
      { action: 'access.denied', agent_id: limited.agent.agentId, metadata: { actorId: limited.agent.agentId, reason: 'ungrantable_scope' } })
  })
  t.test('revoking another client\'s token', async (t) => {
    const token = await mintToken(app, other.agent.agentId)
    one(t, await added(app, () => oauthPost(app, REVOKE, { fields: { token }, headers: nobody.headers })),
      { action: 'access.denied', agent_id: other.agent.agentId, metadata: { actorId: nobody.agent.agentId, reason: 'not_token_owner' } })
  })
})

t.test('limit breaches are refused and audited once each', async (t) => {
  const limited = await build(t, { env: { RATE_LIMIT_TOKEN_PER_CLIENT: '2', RATE_LIMIT_AUTH_FAILURES_PER_IP: '2', TOKEN_MONTHLY_QUOTA: '3', MAX_AGENTS_PER_OWNER: '1' } })
  const root = await seedAdmin(limited)
  const created = await limited.inject({ method: 'POST', url: '/api/v1/agents', headers: root.headers, payload: agentBody({ owner: 'solo', capabilities: ['docs:read'] }) })
  const agentId = created.json().agentId
  const credential = await limited.inject({ method: 'POST', url: credentialsUrl(agentId), headers: root.headers })
  const client = { agentId, secret: credential.json().clientSecret }
  const second = await seedAgent(limited, { owner: 'other', capabilities: ['docs:read'] })
  const secondCredential = await limited.inject({ method: 'POST', url: credentialsUrl(second.agent.agentId), headers: root.headers })
  const quotaClient = { agentId: second.agent.agentId, secret: secondCredential.json().clientSecret }

  t.test('an invalid_scope request (asking beyond the capabilities)', async (t) => {
    one(t, await added(limited, () => requestToken(limited, client, { fields: { scope: 'docs:read agents:write' } })),
      { action: 'access.denied', agent_id: agentId, metadata: { actorId: agentId, reason: 'invalid_scope', requestedScopes: ['agents:write'] } })
  })
  t.test('token requests per client', async (t) => {
    // every token request of the client counts, so the invalid_scope request above took one of the two
    t.equal((await requestToken(limited, client)).statusCode, 200)
    one(t, await added(limited, () => requestToken(limited, client)), { action: 'access.denied', agent_id: agentId, metadata: { reason: 'rate_limited' } })
  })
  t.test('failed authentications per IP', async (t) => {
    for (let n = 0; n < 2; n += 1) await requestToken(limited, { agentId, secret: 'sk_live_x' }, { remoteAddress: '198.51.100.77' })
    one(t, await added(limited, () => requestToken(limited, { agentId, secret: 'sk_live_x' }, { remoteAddress: '198.51.100.77' })),
      { action: 'access.denied', agent_id: null, ip_address: '198.51.100.77', metadata: { reason: 'auth_failures_rate_limited' } })
  })
  t.test('the monthly quota', async (t) => {
    await limited.pg.query(
      `INSERT INTO token_monthly_counts (agent_id, month, count) VALUES ($1, date_trunc('month', now() AT TIME ZONE 'UTC')::date, 3)
       ON CONFLICT (agent_id, month) DO UPDATE SET count = 3`, [quotaClient.agentId])
    one(t, await added(limited, () => requestToken(limited, quotaClient)),
      { action: 'access.denied', agent_id: quotaClient.agentId, metadata: { actorId: quotaClient.agentId, reason: 'quota_exceeded' } })
  })
  t.test('agents per owner', async (t) => {
    one(t, await added(limited, () => limited.inject({ method: 'POST', url: '/api/v1/agents', headers: root.headers, payload: agentBody({ owner: 'solo' }) })),
      { action: 'access.denied', agent_id: root.agent.agentId, metadata: { actorId: root.agent.agentId, reason: 'free_tier_limit' } })
  })
  t.test('active credentials per agent', async (t) => {
    for (let n = 0; n < 4; n += 1) await insertCredential(limited.pg, { credentialId: randomUUID(), clientId: agentId, secretHash: 'x', expiresAt: null })
    const events = await added(limited, () => limited.inject({ method: 'POST', url: credentialsUrl(agentId), headers: root.headers }))
    one(t, events, { action: 'access.denied', agent_id: agentId, metadata: { actorId: root.agent.agentId, reason: 'credential_limit' } })
  })
})
