import { randomUUID } from 'node:crypto'
import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { build, mintToken, seedAgent, type TestApp } from '../../helper.js'
import { insertCredential } from '../../../repositories/credentials.js'
import { assertProblem, type Tap } from '../../routes/agents/support.js'
import { oauthPost, REVOKE, INTROSPECT } from '../../routes/oauth/support.js'

/**
 * Broken object-level authorization, every route at once: agent A (self-service only, plus scopes
 * unrelated to B) tries everything on agent B. Each attempt answers as if B did not exist (404;
 * 403 for collections; the OAuth endpoints' own answers), changes nothing of B's (agent row,
 * credentials, revoked tokens, events about B other than the refusal), and writes exactly one
 * access.denied event naming A (test/routes/agents/authorization.test.ts covers the agent routes'
 * 403/404 split in more detail).
 */
const app = await build(t)

async function snapshotOf (target: TestApp, agentId: string): Promise<string> {
  const { rows } = await target.pg.query(
    `SELECT (SELECT to_jsonb(a) FROM agents a WHERE agent_id = $1) AS agent,
       (SELECT jsonb_agg(c ORDER BY credential_id) FROM credentials c WHERE client_id = $1) AS credentials,
       (SELECT count(*) FROM revoked_tokens WHERE agent_id = $1) AS revoked,
       (SELECT count(*) FROM audit_events WHERE agent_id = $1 AND outcome = 'success') AS changes`, [agentId])
  return JSON.stringify(rows[0])
}

async function denialsBy (actorId: string): Promise<Array<{ agent_id: string | null, metadata: Record<string, unknown> }>> {
  return (await app.pg.query("SELECT agent_id, metadata FROM audit_events WHERE action = 'access.denied' AND metadata->>'actorId' = $1 ORDER BY created_at, event_id", [actorId])).rows
}

const attacker = await seedAgent(app, { capabilities: ['docs:read', 'files:write', 'credentials:write'] }, 'docs:read files:write')
const victim = await seedAgent(app, { capabilities: ['docs:read'] })
const victimId = victim.agent.agentId
const credentialId = randomUUID()
await insertCredential(app.pg, { credentialId, clientId: victimId, secretHash: 'x', expiresAt: null })
const victimToken = await mintToken(app, victimId, { scope: 'docs:read' }, { credentialId })
const a = attacker.headers
const agentUrl = `/api/v1/agents/${victimId}`

const attempts: Array<[string, () => Promise<LightMyRequestResponse>, (t: Tap, res: LightMyRequestResponse) => void, string]> = [
  ['read B', () => app.inject({ method: 'GET', url: agentUrl, headers: a }), (t, res) => assertProblem(t, res, 404, 'AGENT_NOT_FOUND'), victimId],
  ['read B, id in upper case', () => app.inject({ method: 'GET', url: agentUrl.toUpperCase().replace('/API/V1/AGENTS', '/api/v1/agents'), headers: a }), (t, res) => assertProblem(t, res, 404, 'AGENT_NOT_FOUND'), victimId],
  ['patch B', () => app.inject({ method: 'PATCH', url: agentUrl, headers: a, payload: { capabilities: ['docs:read', 'files:write'] } }), (t, res) => assertProblem(t, res, 404, 'AGENT_NOT_FOUND'), victimId],
  ['suspend B', () => app.inject({ method: 'PATCH', url: agentUrl, headers: a, payload: { status: 'suspended' } }), (t, res) => assertProblem(t, res, 404, 'AGENT_NOT_FOUND'), victimId],
  ['decommission B', () => app.inject({ method: 'DELETE', url: agentUrl, headers: a }), (t, res) => assertProblem(t, res, 404, 'AGENT_NOT_FOUND'), victimId],
  ['list agents (to find B)', () => app.inject({ method: 'GET', url: '/api/v1/agents', headers: a }), (t, res) => assertProblem(t, res, 403, 'FORBIDDEN'), attacker.agent.agentId],
  ['list B\'s credentials', () => app.inject({ method: 'GET', url: `${agentUrl}/credentials`, headers: a }), (t, res) => assertProblem(t, res, 404, 'AGENT_NOT_FOUND'), victimId],
  ['generate a credential for B', () => app.inject({ method: 'POST', url: `${agentUrl}/credentials`, headers: a }), (t, res) => assertProblem(t, res, 404, 'AGENT_NOT_FOUND'), victimId],
  ['rotate B\'s credential', () => app.inject({ method: 'POST', url: `${agentUrl}/credentials/${credentialId}/rotate`, headers: a }), (t, res) => assertProblem(t, res, 404, 'AGENT_NOT_FOUND'), victimId],
  ['revoke B\'s credential', () => app.inject({ method: 'DELETE', url: `${agentUrl}/credentials/${credentialId}`, headers: a }), (t, res) => assertProblem(t, res, 404, 'AGENT_NOT_FOUND'), victimId],
  ['read B\'s audit trail', () => app.inject({ method: 'GET', url: `/api/v1/audit?agentId=${victimId}`, headers: a }), (t, res) => assertProblem(t, res, 403, 'FORBIDDEN'), attacker.agent.agentId],
  ['revoke B\'s token', () => oauthPost(app, REVOKE, { fields: { token: victimToken }, headers: a }), (t, res) => {
    t.equal(res.statusCode, 400)
    t.equal(res.json().error, 'unauthorized_client')
  }, victimId]
]

for (const [label, attempt, assertAnswer, deniedAbout] of attempts) {
  t.test(`BOLA: A cannot ${label}: refused, B unchanged, the denial audited once`, async (t) => {
    const before = await snapshotOf(app, victimId)
    const denialsBefore = (await denialsBy(attacker.agent.agentId)).length
    assertAnswer(t, await attempt())
    t.equal(await snapshotOf(app, victimId), before, 'nothing of B changed')
    const denials = await denialsBy(attacker.agent.agentId)
    t.equal(denials.length - denialsBefore, 1, 'exactly one access.denied by A')
    t.equal(denials[denials.length - 1]?.agent_id, deniedAbout)
  })
}

t.test('BOLA: A introspecting B\'s token learns nothing ({active:false}) and B\'s token still works', async (t) => {
  const res = await oauthPost(app, INTROSPECT, { fields: { token: victimToken }, headers: a })
  t.same(res.json(), { active: false })
  t.equal((await app.inject({ method: 'GET', url: agentUrl, headers: { authorization: `Bearer ${victimToken}` } })).statusCode, 200)
})

t.test('BOLA: after all of it, B reads itself, its credential is active and its token valid', async (t) => {
  const self = await app.inject({ method: 'GET', url: agentUrl, headers: { authorization: `Bearer ${victimToken}` } })
  t.equal(self.statusCode, 200)
  t.match(self.json(), { status: 'active', capabilities: ['docs:read'] })
  const creds = await app.inject({ method: 'GET', url: `${agentUrl}/credentials`, headers: { authorization: `Bearer ${victimToken}` } })
  t.match(creds.json().data, [{ credentialId, status: 'active' }])
})
