import t, { type Test } from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { build, type TestApp } from '../../helper.js'
import {
  accessToken, assertOAuthError, auditRows, basic, bootstrapClient, credentialUrl, decodeToken, introspect, oauthPost, registerClient,
  REVOKE, TOKEN, METADATA, type Client
} from './support.js'
import { sealAll } from '../../support/audit.js'

/**
 * Delegation with RFC 8693 token exchange: a three-hop chain (orchestrator → summarizer →
 * retriever) where each hop only narrows, the refusals (widening, depth, an actor not in
 * `mayAct`), and the cascade: revoking or suspending any link kills every token derived from it,
 * seen at once on a second instance of the server (same PostgreSQL, same Redis).
 */

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token'

// depth 2: the three-hop chain fits (two actors), a third actor does not
const env = { DELEGATION_MAX_DEPTH: '2', RATE_LIMIT_AUTH_FAILURES_PER_IP: '0' }
const app = await build(t, { env })
// a second instance on the same database: what a load balancer spreads requests over
const other = await build(t, { env, databaseUrl: app.databaseUrl })
const admin = await bootstrapClient(app)
const jsonAdmin = { ...admin.headers, 'content-type': 'application/json' }

type Agent = Client & { capabilities: string[] }
async function agent (capabilities: string[]): Promise<Agent> {
  return await registerClient(app, admin.headers, { capabilities })
}
async function setMayAct (agentId: string, mayAct: string[]): Promise<LightMyRequestResponse> {
  return await app.inject({ method: 'PATCH', url: `/api/v1/agents/${agentId}`, headers: jsonAdmin, payload: { mayAct } })
}

async function exchange (target: TestApp, actor: Pick<Client, 'agentId' | 'secret'>, subjectToken: string, fields: Record<string, string | undefined> = {}): Promise<LightMyRequestResponse> {
  return await oauthPost(target, TOKEN, {
    fields: { grant_type: EXCHANGE, subject_token: subjectToken, subject_token_type: ACCESS_TOKEN, ...fields },
    headers: { authorization: basic(actor.agentId, actor.secret) }
  })
}
async function exchanged (target: TestApp, actor: Agent, subjectToken: string, fields: Record<string, string | undefined> = {}): Promise<string> {
  const res = await exchange(target, actor, subjectToken, fields)
  if (res.statusCode !== 200) throw new Error(`exchange failed: ${res.statusCode} ${res.body}`)
  return res.json().access_token as string
}

/** A fresh chain: orchestrator's token, the summarizer's (hop 1) and the retriever's (hop 2). */
async function chain () {
  const orchestrator = await agent(['docs:read', 'docs:write', 'search:query'])
  const summarizer = await agent(['docs:read', 'docs:write', 'search:query'])
  const retriever = await agent(['docs:read', 'search:query'])
  // the summarizer may act for the orchestrator; the retriever for the summarizer
  for (const [who, mayAct] of [[orchestrator, [summarizer.agentId]], [summarizer, [retriever.agentId]]] as Array<[Agent, string[]]>) {
    const res = await setMayAct(who.agentId, mayAct)
    if (res.statusCode !== 200) throw new Error(`mayAct failed: ${res.statusCode} ${res.body}`)
  }
  const root = await accessToken(app, orchestrator)
  const hop1 = await exchanged(app, summarizer, root, { scope: 'docs:read search:query' })
  const hop2 = await exchanged(app, retriever, hop1, { scope: 'docs:read' })
  return { orchestrator, summarizer, retriever, root, hop1, hop2 }
}

async function active (target: TestApp, token: string): Promise<boolean> {
  return (await introspect(target, token, admin)).active === true
}

t.test('a three-hop chain: each hop narrower, sub kept, act nested, exp never later, every hop audited with its chain', async (t) => {
  const { orchestrator, summarizer, retriever, root, hop1, hop2 } = await chain()
  const claims = [root, hop1, hop2].map((token) => decodeToken(token).payload)

  t.same(claims.map((c) => c.sub), [orchestrator.agentId, orchestrator.agentId, orchestrator.agentId], 'sub stays the original subject')
  t.same(claims.map((c) => c.client_id), [orchestrator.agentId, summarizer.agentId, retriever.agentId], 'client_id is the acting agent')
  t.same(claims[1].act, { sub: summarizer.agentId })
  t.same(claims[2].act, { sub: retriever.agentId, act: { sub: summarizer.agentId } }, 'the outermost act is the latest actor')
  t.same(claims.map((c) => c.scope), ['docs:read docs:write search:query', 'docs:read search:query', 'docs:read'])
  t.ok((claims[1].exp as number) <= (claims[0].exp as number) && (claims[2].exp as number) <= (claims[1].exp as number), 'exp never later than the subject token\'s')

  const answer = await exchange(app, retriever, hop1, { scope: 'search:query' })
  t.equal(answer.statusCode, 200)
  t.match(answer.json(), { issued_token_type: ACCESS_TOKEN, token_type: 'Bearer', scope: 'search:query' })
  t.equal(answer.headers['cache-control'], 'no-store')

  const seen = await introspect(other, hop2, admin)
  t.match(seen, { active: true, sub: orchestrator.agentId, client_id: retriever.agentId, scope: 'docs:read', act: { sub: retriever.agentId, act: { sub: summarizer.agentId } } },
    'introspection (on the other instance) returns the nested act')

  const events = await auditRows(app, 'token.exchanged', { agentId: retriever.agentId })
  t.ok(events.length >= 1)
  t.same(events[0].metadata.chain, [orchestrator.agentId, summarizer.agentId, retriever.agentId], 'the event carries the chain, subject first')
  t.equal(events[0].metadata.subjectId, orchestrator.agentId)
  await sealAll(app)
  const verify = await app.inject({ method: 'GET', url: '/api/v1/audit/verify', headers: admin.headers })
  t.equal(verify.statusCode, 200)
  t.equal(verify.json().intact, true, 'the exchanges are part of the verified hash chain')
})

t.test('widening is refused with invalid_scope; without scope the token gets the subject\'s scope ∩ the actor\'s capabilities', async (t) => {
  const { summarizer, retriever, root, hop1 } = await chain()
  assertOAuthError(t, await exchange(app, summarizer, root, { scope: 'docs:read docs:delete' }), 400, 'invalid_scope')
  assertOAuthError(t, await exchange(app, retriever, hop1, { scope: 'docs:write' }), 400, 'invalid_scope')
  const denied = await auditRows(app, 'access.denied', { agentId: retriever.agentId, metadataKey: 'reason', metadataValue: 'invalid_scope' })
  t.equal(denied.length, 1, 'the widening attempt is audited')
  // hop1 carries docs:read search:query; the retriever can do docs:read search:query
  t.equal(decodeToken(await exchanged(app, retriever, hop1)).payload.scope, 'docs:read search:query')
})

t.test('an actor in nobody\'s mayAct is refused with invalid_grant and audited with the chain', async (t) => {
  const { orchestrator, root } = await chain()
  const stranger = await agent(['docs:read'])
  assertOAuthError(t, await exchange(app, stranger, root), 400, 'invalid_grant')
  const [denied] = await auditRows(app, 'access.denied', { agentId: stranger.agentId, metadataKey: 'reason', metadataValue: 'delegation_refused' })
  t.same(denied?.metadata.chain, [orchestrator.agentId, stranger.agentId])
})

t.test('the depth limit: a third actor is refused, also when it replays an exchanged token as its subject token', async (t) => {
  const { retriever, hop2 } = await chain()
  const indexer = await agent(['docs:read'])
  t.equal((await setMayAct(retriever.agentId, [indexer.agentId])).statusCode, 200)
  assertOAuthError(t, await exchange(app, indexer, hop2), 400, 'invalid_grant')
  const [denied] = await auditRows(app, 'access.denied', { agentId: indexer.agentId, metadataKey: 'reason', metadataValue: 'delegation_too_deep' })
  t.equal(denied?.metadata.maxDepth, 2)
})

t.test('revoking the original token kills hops 1 and 2 at once on the other instance', async (t) => {
  const { orchestrator, root, hop1, hop2 } = await chain()
  t.ok(await active(other, hop2), 'alive before')
  const revoked = await oauthPost(app, REVOKE, { fields: { token: root }, headers: { authorization: basic(orchestrator.agentId, orchestrator.secret) } })
  t.equal(revoked.statusCode, 200)
  // the first look after the revocation answered, on the other instance: no propagation delay to wait out
  t.notOk(await active(other, hop1), 'hop 1 is inactive')
  t.notOk(await active(other, hop2), 'hop 2 is inactive')
  const read = await other.inject({ method: 'GET', url: `/api/v1/agents/${orchestrator.agentId}`, headers: { authorization: `Bearer ${hop2}` } })
  t.equal(read.statusCode, 401, 'the management API refuses it too')
})

t.test('suspending the summarizer kills hops 1 and 2 but not the orchestrator\'s own token', async (t) => {
  const { summarizer, root, hop1, hop2 } = await chain()
  const suspended = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${summarizer.agentId}`, headers: jsonAdmin, payload: { status: 'suspended' } })
  t.equal(suspended.statusCode, 200)
  t.notOk(await active(other, hop1))
  t.notOk(await active(other, hop2))
  t.ok(await active(other, root), 'the subject\'s own token is not part of the summarizer\'s chain')
  // reactivation does not revive tokens issued before the suspension
  t.equal((await app.inject({ method: 'PATCH', url: `/api/v1/agents/${summarizer.agentId}`, headers: jsonAdmin, payload: { status: 'active' } })).statusCode, 200)
  t.notOk(await active(other, hop2), 'still dead after reactivation')
})

t.test('removing an actor from mayAct kills what it obtained; revoking a hop\'s credential kills what follows it', async (t) => {
  const first = await chain()
  t.equal((await setMayAct(first.summarizer.agentId, [])).statusCode, 200)
  t.notOk(await active(other, first.hop2), 'the retriever may no longer act for the summarizer: hop 2 is dead')
  t.ok(await active(other, first.hop1), 'hop 1 does not depend on it')
  const [updated] = (await auditRows(app, 'agent.updated', { agentId: first.summarizer.agentId })).slice(-1)
  t.same(updated?.metadata.mayAct, [], 'the change of mayAct is audited with the new list')

  const second = await chain()
  const revoked = await app.inject({ method: 'DELETE', url: credentialUrl(second.summarizer.agentId, second.summarizer.credentialId), headers: admin.headers })
  t.equal(revoked.statusCode, 204)
  t.notOk(await active(other, second.hop1))
  t.notOk(await active(other, second.hop2))
  t.ok(await active(other, second.root))
})

t.test('a delegated token never grants self-service over its subject', async (t) => {
  const orchestrator = await agent(['docs:read'])
  const summarizer = await agent(['docs:read'])
  t.equal((await setMayAct(orchestrator.agentId, [summarizer.agentId])).statusCode, 200)
  const own = await accessToken(app, orchestrator)
  t.equal((await app.inject({ method: 'GET', url: `/api/v1/agents/${orchestrator.agentId}`, headers: { authorization: `Bearer ${own}` } })).statusCode, 200, 'its own token reads itself')
  const delegated = await exchanged(app, summarizer, own)
  const read = await app.inject({ method: 'GET', url: `/api/v1/agents/${orchestrator.agentId}`, headers: { authorization: `Bearer ${delegated}` } })
  t.equal(read.statusCode, 404, 'the delegated token does not')
  const mint = await app.inject({ method: 'POST', url: `/api/v1/agents/${orchestrator.agentId}/credentials`, headers: { authorization: `Bearer ${delegated}` } })
  t.equal(mint.statusCode, 404, 'nor mints a secret of its subject')
})

t.test('the actor revokes its own exchanged token; exchanges count against the actor\'s monthly quota', async (t) => {
  const { summarizer, hop1, hop2 } = await chain()
  const month = `${new Date().toISOString().slice(0, 7)}-01`
  const count = async (agentId: string) => (await app.pg.query<{ count: number }>('SELECT count FROM token_monthly_counts WHERE agent_id = $1 AND month = $2', [agentId, month])).rows[0]?.count ?? 0
  t.equal(await count(summarizer.agentId), 1, 'the summarizer\'s one exchange is counted against it')
  const revoked = await oauthPost(app, REVOKE, { fields: { token: hop1 }, headers: { authorization: basic(summarizer.agentId, summarizer.secret) } })
  t.equal(revoked.statusCode, 200)
  t.notOk(await active(app, hop1))
  t.notOk(await active(app, hop2), 'and what was derived from it')
})

t.test('the actor introspects the token it obtained; an agent outside the chain without tokens:read sees nothing', async (t) => {
  const { retriever, summarizer, hop2 } = await chain()
  t.match(await introspect(app, hop2, retriever), { active: true, client_id: retriever.agentId }, 'the token was issued to the retriever')
  t.same(await introspect(app, hop2, summarizer), { active: false }, 'the summarizer is in the chain but is not the client')
  const stranger = await agent(['docs:read'])
  t.same(await introspect(app, hop2, stranger), { active: false })
})

t.test('malformed exchanges are invalid_request; exchange parameters on client_credentials are refused', async (t) => {
  const { orchestrator, summarizer, root } = await chain()
  assertOAuthError(t, await exchange(app, summarizer, root, { subject_token: undefined }), 400, 'invalid_request')
  assertOAuthError(t, await exchange(app, summarizer, root, { subject_token_type: 'urn:ietf:params:oauth:token-type:id_token' }), 400, 'invalid_request')
  assertOAuthError(t, await exchange(app, summarizer, root, { requested_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }), 400, 'invalid_request')
  assertOAuthError(t, await exchange(app, summarizer, root, { actor_token: root }), 400, 'invalid_request')
  assertOAuthError(t, await exchange(app, summarizer, root, { resource: 'https://a.example/', audience: 'https://b.example/' }), 400, 'invalid_target')
  // an actor_token must be the authenticated client's own
  assertOAuthError(t, await exchange(app, summarizer, root, { actor_token: root, actor_token_type: ACCESS_TOKEN }), 400, 'invalid_grant')
  const ownToken = await accessToken(app, summarizer)
  t.equal((await exchange(app, summarizer, root, { actor_token: ownToken, actor_token_type: ACCESS_TOKEN })).statusCode, 200, 'its own actor_token is accepted')
  assertOAuthError(t, await exchange(app, summarizer, 'not.a.token'), 400, 'invalid_grant')
  assertOAuthError(t, await oauthPost(app, TOKEN, {
    fields: { grant_type: 'client_credentials', subject_token: root },
    headers: { authorization: basic(orchestrator.agentId, orchestrator.secret) }
  }), 400, 'invalid_request')
  // the actor's audiences decide (RFC 8707): outside them invalid_target, listed it becomes aud
  assertOAuthError(t, await exchange(app, summarizer, root, { audience: 'https://rs.example/' }), 400, 'invalid_target')
  const listed = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${summarizer.agentId}`, headers: jsonAdmin, payload: { audiences: ['https://rs.example/'] } })
  t.equal(listed.statusCode, 200, listed.body)
  const audience = decodeToken(await exchanged(app, summarizer, root, { audience: 'https://rs.example/' })).payload.aud
  t.equal(audience, 'https://rs.example/', 'audience becomes aud, like resource')
})

t.test('mayAct: a list of agent ids, set with agents:write, shown on the agent', async (t: Test) => {
  const orchestrator = await agent(['docs:read'])
  const bad = await setMayAct(orchestrator.agentId, ['not-a-uuid'])
  t.equal(bad.statusCode, 400)
  const reader = await agent(['agents:read'])
  const readerToken = await accessToken(app, reader)
  const refused = await app.inject({ method: 'PATCH', url: `/api/v1/agents/${orchestrator.agentId}`, headers: { authorization: `Bearer ${readerToken}`, 'content-type': 'application/json' }, payload: { mayAct: [reader.agentId] } })
  t.equal(refused.statusCode, 403, 'agents:read alone may not change it')
  const shown = await app.inject({ method: 'GET', url: `/api/v1/agents/${orchestrator.agentId}`, headers: admin.headers })
  t.same(shown.json().mayAct, [], 'empty by default')
})

t.test('the metadata document lists the grant and the token types', async (t) => {
  const metadata = (await app.inject({ method: 'GET', url: METADATA })).json()
  t.ok(metadata.grant_types_supported.includes(EXCHANGE))
  t.same(metadata.token_exchange_token_types_supported, [ACCESS_TOKEN])
})
