// What is measured: each target is one kind of request against one server, with a generator that
// autocannon calls for every request (round-robin clients, fresh assertions and DPoP proofs), and
// a check of one answer before any load (a 200 that says {active:false} would measure nothing).
import { headerOf, assertionMaker, dpopProofMaker, keyPairFor } from './jws.mjs'

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token'
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'

/** client_secret_basic as RFC 6749 §2.3.1 has it: both parts form-urlencoded first. */
export function basicAuth (id, secret) {
  return `Basic ${Buffer.from(`${encodeURIComponent(id)}:${encodeURIComponent(secret)}`).toString('base64')}`
}

/** One request outside the load; throws with the answer when it is not a 2xx. */
export async function send (origin, { method, path, headers = {}, body }) {
  const response = await fetch(`${origin}${path}`, { method, headers, body })
  const text = await response.text()
  if (response.status < 200 || response.status >= 300) throw new Error(`${method} ${path}: ${response.status} ${text.slice(0, 300)}`)
  return text.length === 0 ? null : JSON.parse(text)
}

/** Runs `work` over `items` with at most `limit` at a time; results in order. */
async function pooled (items, limit, work) {
  const results = new Array(items.length)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++
      results[index] = await work(items[index], index)
    }
  }))
  return results
}

/** A request maker that builds each request from the next of `items`, round robin (with its index). */
function inTurn (items, build) {
  let i = -1
  return () => {
    i = (i + 1) % items.length
    return build(items[i], i)
  }
}

/**
 * Tokens an AgentIdP server needs before its load: the operator's (Bearer for GET /agents and
 * /audit), and one per client (the subject tokens of token exchange, the tokens introspected).
 * Issuing them is also where each client's first argon2 verification happens. Returns null and
 * the reason when the server signs with another algorithm than it was asked to.
 */
export async function prepareAgentIdp (server, alg, { clients, operator }) {
  const issue = (id, secret) => send(server.origin, {
    method: 'POST', path: '/api/v1/token', headers: { ...FORM, authorization: basicAuth(id, secret) }, body: 'grant_type=client_credentials'
  })
  const { access_token: operatorToken } = await issue(operator.agentId, operator.secret)
  const signedWith = headerOf(operatorToken).alg
  if (signedWith !== alg) return { unavailable: `asked for JWT_ALG=${alg}, issued ${signedWith} (JWT_ALG not supported by this build)` }
  const subjectTokens = await pooled(clients, 8, async (client) => (await issue(client.agentId, client.secret)).access_token)
  return { operatorToken, subjectTokens }
}

/**
 * An ES256 key registered for each client (PUT /agents/:id/jwks, as the operator): private_key_jwt.
 * The keys live in PostgreSQL, so one registration serves every server of the run.
 */
export async function registerClientKeys (server, operatorToken, clients) {
  return await pooled(clients, 8, async (client) => {
    const { privateKey, publicKey } = keyPairFor('ES256')
    const kid = `bench-${client.agentId.slice(0, 8)}`
    await send(server.origin, {
      method: 'PUT',
      path: `/api/v1/agents/${client.agentId}/jwks`,
      headers: { authorization: `Bearer ${operatorToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ jwks: { keys: [{ ...publicKey.export({ format: 'jwk' }), kid, alg: 'ES256', use: 'sig' }] } })
    })
    return { clientId: client.agentId, privateKey, kid }
  })
}

/** Opaque tokens of oidc-provider (the only kind it can introspect: see servers/oidc-provider.mjs). */
export async function prepareOidcProvider (server, count) {
  const { client_id: id, client_secret: secret, opaqueResource } = server.ready
  return await pooled(Array.from({ length: count }), 4, async () => (await send(server.origin, {
    method: 'POST', path: server.ready.tokenPath, headers: { ...FORM, authorization: basicAuth(id, secret) },
    body: `grant_type=client_credentials&scope=api%3Aread&resource=${encodeURIComponent(opaqueResource)}`
  })).access_token)
}

const expectToken = (alg) => (body) => {
  if (typeof body?.access_token !== 'string') throw new Error(`no access_token in ${JSON.stringify(body).slice(0, 200)}`)
  if (alg !== undefined && headerOf(body.access_token).alg !== alg) throw new Error(`signed ${headerOf(body.access_token).alg}, not ${alg}`)
}
const expectActive = (body) => { if (body?.active !== true) throw new Error(`introspection answered ${JSON.stringify(body)}`) }

/**
 * The product's targets on one server, by name: basic, introspect, privateKeyJwt, dpop, exchange,
 * getAgent, live. (The runner measures all of them on the RS256 server and only the first two,
 * which sign or verify, on the others: a run's length stays in bounds.)
 */
export function agentIdpTargets (server, alg, { clients, operator, agentIds, keys, operatorToken, subjectTokens }) {
  const tokenPath = '/api/v1/token'
  const basics = clients.map((client) => basicAuth(client.agentId, client.secret))
  const operatorBasic = basicAuth(operator.agentId, operator.secret)
  const base = { group: 'AgentIdP', alg, kind: 'product', server, settle: true }
  const targets = {}
  targets.basic = {
    ...base,
    id: `agentidp/${alg}/token:client_secret_basic`,
    label: `AgentIdP ${alg} token (client_secret_basic)`,
    request: inTurn(basics, (basic) => ({ method: 'POST', path: tokenPath, headers: { ...FORM, authorization: basic }, body: 'grant_type=client_credentials&scope=docs%3Aread' })),
    check: expectToken(alg)
  }
  targets.introspect = {
    ...base,
    id: `agentidp/${alg}/introspect`,
    label: `AgentIdP ${alg} introspection`,
    request: inTurn(subjectTokens, (token) => ({ method: 'POST', path: '/api/v1/token/introspect', headers: { ...FORM, authorization: operatorBasic }, body: `token=${token}` })),
    check: expectActive
  }
  const makers = keys.map((key) => ({ clientId: key.clientId, next: assertionMaker({ clientId: key.clientId, audience: server.origin, privateKey: key.privateKey, kid: key.kid }) }))
  const proof = dpopProofMaker({ method: 'POST', url: `${server.origin}${tokenPath}` })
  targets.privateKeyJwt = {
    ...base,
    id: `agentidp/${alg}/token:private_key_jwt`,
    label: `AgentIdP ${alg} token (private_key_jwt)`,
    request: inTurn(makers, (maker) => ({
      method: 'POST', path: tokenPath, headers: FORM,
      body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'docs:read', client_assertion_type: ASSERTION_TYPE, client_assertion: maker.next() }).toString()
    })),
    check: expectToken(alg)
  }
  targets.dpop = {
    ...base,
    id: `agentidp/${alg}/token:dpop`,
    label: `AgentIdP ${alg} token (DPoP, basic)`,
    request: inTurn(basics, (basic) => ({ method: 'POST', path: tokenPath, headers: { ...FORM, authorization: basic, dpop: proof() }, body: 'grant_type=client_credentials&scope=docs%3Aread' })),
    check: (body) => { expectToken(alg)(body); if (body.token_type !== 'DPoP') throw new Error(`token_type ${body.token_type}, not DPoP`) }
  }
  targets.exchange = {
    ...base,
    id: `agentidp/${alg}/token-exchange`,
    label: `AgentIdP ${alg} token exchange`,
    // client i + 1 acts for client i (seeded may_act), presenting client i's token
    request: inTurn(subjectTokens, (subjectToken, subject) => ({
      method: 'POST', path: tokenPath, headers: { ...FORM, authorization: basics[(subject + 1) % basics.length] },
      body: `grant_type=${encodeURIComponent(EXCHANGE)}&subject_token=${subjectToken}&subject_token_type=${encodeURIComponent(ACCESS_TOKEN)}`
    })),
    check: expectToken(alg)
  }
  targets.getAgent = {
    ...base,
    id: `agentidp/${alg}/get-agent`,
    label: `AgentIdP ${alg} GET /agents/:id`,
    // any of the seeded agents, at random: the read is not always of a row in cache
    request: () => ({ method: 'GET', path: `/api/v1/agents/${agentIds[Math.floor(Math.random() * agentIds.length)]}`, headers: { authorization: `Bearer ${operatorToken}` } }),
    check: (body) => { if (typeof body?.agentId !== 'string') throw new Error(`no agent in ${JSON.stringify(body).slice(0, 200)}`) }
  }
  targets.live = {
    ...base,
    id: `agentidp/${alg}/health-live`,
    label: `AgentIdP ${alg} GET /health/live`,
    settle: false,
    request: { method: 'GET', path: '/health/live' },
    check: (body) => { if (body?.status !== 'ok') throw new Error(JSON.stringify(body)) }
  }
  return targets
}

/** oidc-provider issuing JWT access tokens with `alg` (token) and, given opaque tokens, introspecting them. */
export function oidcProviderTargets (server, alg, { opaqueTokens = [] } = {}) {
  const { client_id: id, client_secret: secret } = server.ready
  const authorization = basicAuth(id, secret)
  const base = { group: 'oidc-provider', alg, kind: 'reference', server, settle: false }
  const targets = {}
  targets.token = {
    ...base,
    id: `oidc-provider/${alg}/token`,
    label: `oidc-provider ${alg} token`,
    request: { method: 'POST', path: server.ready.tokenPath, headers: { ...FORM, authorization }, body: 'grant_type=client_credentials&scope=api%3Aread' },
    check: expectToken(alg)
  }
  if (opaqueTokens.length > 0) {
    targets.introspect = {
      ...base,
      id: 'oidc-provider/introspect',
      label: 'oidc-provider introspection (opaque)',
      request: inTurn(opaqueTokens, (token) => ({ method: 'POST', path: server.ready.introspectionPath, headers: { ...FORM, authorization }, body: `token=${token}` })),
      check: expectActive
    }
  }
  return targets
}

export function floorTarget (server, alg) {
  return {
    group: 'floor', alg, kind: 'reference', server, settle: false,
    id: `floor/${alg}/token`,
    label: `floor ${alg} token`,
    request: { method: 'POST', path: '/token', headers: FORM, body: 'grant_type=client_credentials&scope=docs%3Aread' },
    check: expectToken(alg)
  }
}

export function bareTarget (server) {
  return {
    group: 'bare', alg: null, kind: 'reference', server, settle: false,
    id: 'bare/json',
    label: 'bare Fastify GET /json',
    request: { method: 'GET', path: '/json' },
    check: (body) => { if (body?.status !== 'ok') throw new Error(JSON.stringify(body)) }
  }
}

/** One request of `target`, checked: the load would only repeat what this shows. */
export async function probe (target) {
  const request = typeof target.request === 'function' ? target.request() : target.request
  const body = await send(target.server.origin, request)
  target.check(body)
}
