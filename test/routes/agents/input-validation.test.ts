import t from 'tap'
import { agentBody, build, seedAdmin, seedAgent } from '../../helper.js'
import { AGENTS, agentRow, agentUrl, assertClientError, assertProblem, assertValidationError, countAgentsWithEmail } from './support.js'

const app = await build(t)
const admin = await seedAdmin(app)
const json = { ...admin.headers, 'content-type': 'application/json' }
const KB10 = 'a'.repeat(10 * 1024)

async function countAllAgents (): Promise<number> {
  const { rows } = await app.pg.query<{ count: number }>('SELECT count(*)::int AS count FROM agents')
  return rows[0].count
}

const post = (payload: unknown, headers: Record<string, string> = admin.headers) =>
  app.inject({ method: 'POST', url: AGENTS, headers, payload: payload as Record<string, unknown> })

t.test('NUL bytes in any string field of a registration are a 400 and nothing is created', async (t) => {
  const cases: Record<string, unknown> = {
    email: 'nul\u0000byte@example.com',
    owner: 'team\u0000a',
    version: '1.0.0\u0000',
    agentType: 'summarizer\u0000',
    deploymentEnv: 'staging\u0000',
    capabilities: ['docs:read\u0000']
  }
  const before = await countAllAgents()
  for (const [field, value] of Object.entries(cases)) {
    const res = await post(agentBody({ [field]: value }))
    assertValidationError(t, res, new RegExp(`^body\\.${field}`))
  }
  t.equal(await countAllAgents(), before, 'nothing created')
})

t.test('control characters other than NUL in owner are refused too', async (t) => {
  for (const owner of ['team\na', 'team\ta', 'team\u001ba', 'team\u007fa']) {
    assertValidationError(t, await post(agentBody({ owner })), 'body.owner')
  }
})

t.test('invisible formatting in owner is refused: zero-width characters and bidirectional overrides (issue 11, defect 12)', async (t) => {
  for (const owner of ['team\u200ba', 'team\u200da', 'team\u202ea', 'team\u2066a', '\ufeffteam']) {
    assertValidationError(t, await post(agentBody({ owner })), 'body.owner')
  }
  const patched = await app.inject({ method: 'PATCH', url: agentUrl((await seedAgent(app)).agent.agentId), headers: admin.headers, payload: { owner: 'team\u202eb' } })
  assertValidationError(t, patched, 'body.owner')
  t.equal((await post(agentBody({ owner: 'équipe-α' }))).statusCode, 201, 'other Unicode text stays welcome')
})

t.test('a NUL byte in a JSON key is an unknown field: 400', async (t) => {
  const before = await countAllAgents()
  assertValidationError(t, await post(agentBody({ 'owner\u0000': 'x' })))
  t.equal(await countAllAgents(), before)
})

t.test('NUL bytes in a PATCH are a 400 and the agent is unchanged', async (t) => {
  const { agent } = await seedAgent(app)
  const before = await agentRow(app, agent.agentId)
  for (const payload of [{ owner: 'a\u0000b' }, { version: '2.0.0\u0000' }, { capabilities: ['x:\u0000'] }]) {
    const res = await app.inject({ method: 'PATCH', url: agentUrl(agent.agentId), headers: admin.headers, payload })
    assertValidationError(t, res)
  }
  t.same(await agentRow(app, agent.agentId), before)
})

t.test('NUL bytes in query parameters are a 400', async (t) => {
  for (const query of ['owner=a%00b', 'owner=%00', 'status=active%00', 'agentType=%00router', 'deploymentEnv=staging%00', 'limit=1%00', 'cursor=%00']) {
    const res = await app.inject({ method: 'GET', url: `${AGENTS}?${query}`, headers: admin.headers })
    assertValidationError(t, res)
  }
})

t.test('a NUL byte as the path agentId is a 4xx, never a 5xx', async (t) => {
  for (const method of ['GET', 'PATCH', 'DELETE'] as const) {
    const res = await app.inject({ method, url: `${AGENTS}/%00`, headers: admin.headers, ...(method === 'PATCH' ? { payload: { version: '2.0.0' } } : {}) })
    assertClientError(t, res, `${method} /agents/%00`)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
  }
  const res = await app.inject({ method: 'GET', url: `${AGENTS}/6f1c2a57-9a1e-4d3b-8c55-2b9f3e0a7d4%00`, headers: admin.headers })
  assertValidationError(t, res, 'params.agentId')
})

t.test('10 KB strings in any field are a 400, never stored', async (t) => {
  for (const [field, value] of Object.entries({ email: `${KB10}@example.com`, owner: KB10, version: `1.0.0-${KB10}`, agentType: KB10, capabilities: [`docs:${KB10}`] })) {
    const body = agentBody({ [field]: value })
    const res = await post(body)
    assertValidationError(t, res, new RegExp(`^body\\.${field}`))
  }
  const { rows } = await app.pg.query<{ count: number }>('SELECT count(*)::int AS count FROM agents WHERE length(email) > 254 OR length(owner) > 128')
  t.equal(rows[0].count, 0)
})

t.test('a 10 KB unknown field name is a 400', async (t) => {
  assertValidationError(t, await post(agentBody({ [KB10]: 'x' })))
})

t.test('10 KB query parameters are a 400', async (t) => {
  for (const name of ['owner', 'cursor', 'status', 'limit']) {
    const res = await app.inject({ method: 'GET', url: AGENTS, query: { [name]: KB10 }, headers: admin.headers })
    assertValidationError(t, res, new RegExp(name))
  }
})

t.test('a 10 KB path agentId is a 400 problem that does not echo the input', async (t) => {
  for (const method of ['GET', 'PATCH', 'DELETE'] as const) {
    const res = await app.inject({ method, url: `${AGENTS}/${KB10}`, headers: admin.headers, ...(method === 'PATCH' ? { payload: { version: '2.0.0' } } : {}) })
    assertProblem(t, res, 400, 'VALIDATION_ERROR')
    t.ok(res.body.length < 1024, `a short answer, got ${res.body.length} bytes`)
  }
})

t.test('an agentId of 101 characters (just past the router limit) is a 400 problem', async (t) => {
  const res = await app.inject({ method: 'GET', url: `${AGENTS}/${'a'.repeat(101)}`, headers: admin.headers })
  assertProblem(t, res, 400, 'VALIDATION_ERROR')
})

t.test('a path with broken percent-encoding is a 400 problem', async (t) => {
  for (const path of ['%E0%A4%A', '%', '%zz']) {
    const res = await app.inject({ method: 'GET', url: `${AGENTS}/${path}`, headers: admin.headers })
    assertProblem(t, res, 400)
  }
})

t.test('malformed agentIds in paths are a 400 VALIDATION_ERROR on every method', async (t) => {
  for (const bad of ['123', 'null', 'undefined', '..%2F..%2Fetc%2Fpasswd', "1'%20OR%20'1'%3D'1", '6f1c2a57_9a1e_4d3b_8c55_2b9f3e0a7d41', '{6f1c2a57-9a1e-4d3b-8c55-2b9f3e0a7d41}']) {
    for (const method of ['GET', 'PATCH', 'DELETE'] as const) {
      const res = await app.inject({ method, url: `${AGENTS}/${bad}`, headers: admin.headers, ...(method === 'PATCH' ? { payload: { version: '2.0.0' } } : {}) })
      assertValidationError(t, res, 'params.agentId')
    }
  }
})

t.test('bad enum values are 400s listing the allowed values', async (t) => {
  const res = await post(agentBody({ agentType: 'Summarizer' }))
  assertValidationError(t, res, 'body.agentType')
  t.match(res.json().errors[0].message, /summarizer/)
  assertValidationError(t, await post(agentBody({ deploymentEnv: 'PRODUCTION' })), 'body.deploymentEnv')
  assertValidationError(t, await app.inject({ method: 'GET', url: `${AGENTS}?status=ACTIVE`, headers: admin.headers }), /status/)
})

t.test('values of the wrong JSON type are 400s, never coerced', async (t) => {
  const before = await countAllAgents()
  for (const override of [
    { capabilities: 'docs:read docs:write' }, { capabilities: [1, 2] }, { email: { $ne: null } }, { owner: ['a', 'b'] },
    { version: { major: 1 } }, { capabilities: [['docs:read']] }, { capabilities: 'docs:read' }, { owner: 123 }, { owner: true },
    { owner: ['solo'] }, { email: ['someone@example.com'] }, { version: ['1.0.0'] }
  ]) {
    assertValidationError(t, await post(agentBody(override)))
  }
  t.equal(await countAllAgents(), before, 'no value of the wrong JSON type was coerced into an agent')
})

t.test('null for any PATCH field is a 400', async (t) => {
  const { agent } = await seedAgent(app)
  const before = await agentRow(app, agent.agentId)
  for (const field of ['status', 'capabilities', 'version', 'owner', 'deploymentEnv', 'agentType']) {
    const res = await app.inject({ method: 'PATCH', url: agentUrl(agent.agentId), headers: admin.headers, payload: { [field]: null } })
    assertValidationError(t, res)
  }
  t.same(await agentRow(app, agent.agentId), before)
})

t.test('malformed JSON is a 400 problem', async (t) => {
  for (const payload of ['{"email":', '{email: "a@example.com"}', '{"a":1}{"b":2}', "{'a':1}", '\u0000', '{"owner":"x",}']) {
    const res = await post(payload, json)
    assertProblem(t, res, 400, 'VALIDATION_ERROR')
  }
})

t.test('an empty JSON body is a 400 problem', async (t) => {
  assertProblem(t, await post('', json), 400)
})

t.test('__proto__ and constructor.prototype in a body are refused and pollute nothing', async (t) => {
  const base = JSON.stringify(agentBody()).slice(0, -1)
  for (const extra of ['"__proto__":{"isAdmin":true}', '"constructor":{"prototype":{"isAdmin":true}}']) {
    const res = await post(`${base},${extra}}`, json)
    assertClientError(t, res, extra)
  }
  t.equal(({} as Record<string, unknown>).isAdmin, undefined)
})

for (const contentType of ['text/plain', 'application/xml']) {
  t.test(`a body sent as ${contentType} is a 415 problem and creates nothing`, async (t) => {
    const body = agentBody()
    const res = await post(JSON.stringify(body), { ...admin.headers, 'content-type': contentType })
    assertProblem(t, res, 415)
    t.equal(await countAgentsWithEmail(app, String(body.email)), 0)
  })
}

for (const contentType of ['application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
  t.test(`a body sent as ${contentType} is refused with a 4xx problem and creates nothing`, async (t) => {
    const body = agentBody()
    const payload = contentType === 'application/x-www-form-urlencoded'
      ? new URLSearchParams(body as Record<string, string>).toString()
      : JSON.stringify(body)
    const res = await post(payload, { ...admin.headers, 'content-type': contentType })
    assertClientError(t, res, contentType)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    t.equal(await countAgentsWithEmail(app, String(body.email)), 0)
  })
}

t.test('a PATCH sent as text/plain is a 415 and changes nothing', async (t) => {
  const { agent } = await seedAgent(app)
  const res = await app.inject({ method: 'PATCH', url: agentUrl(agent.agentId), headers: { ...admin.headers, 'content-type': 'text/plain' }, payload: '{"version":"2.0.0"}' })
  assertProblem(t, res, 415)
  t.equal((await agentRow(app, agent.agentId))?.version, agent.version)
})

t.test('a body over 64 KiB is a 413 problem and creates nothing', async (t) => {
  const body = agentBody({ owner: 'o'.repeat(70 * 1024) })
  const res = await post(body)
  assertProblem(t, res, 413)
  t.equal(await countAgentsWithEmail(app, String(body.email)), 0)
  const garbage = await post('x'.repeat(65 * 1024 + 1), json)
  assertProblem(t, garbage, 413)
})

t.test('a body just under 64 KiB is read and judged on its content (400, not 413)', async (t) => {
  const res = await post(agentBody({ padding: 'p'.repeat(60 * 1024) }))
  assertValidationError(t, res, 'body.padding')
})

t.test('unknown query parameters on the list are a 400', async (t) => {
  for (const query of ['foo=bar', 'email=a@example.com', 'offset=10', 'sort=createdAt', 'limit=5&page=2']) {
    assertValidationError(t, await app.inject({ method: 'GET', url: `${AGENTS}?${query}`, headers: admin.headers }))
  }
})

t.test('a repeated query parameter is a 400, not a 5xx', async (t) => {
  for (const query of ['status=active&status=suspended', 'limit=1&limit=2', 'owner=a&owner=b', 'cursor=abc&cursor=def']) {
    const res = await app.inject({ method: 'GET', url: `${AGENTS}?${query}`, headers: admin.headers })
    assertProblem(t, res, 400, 'VALIDATION_ERROR')
  }
})

t.test('SQL-looking values are plain data', async (t) => {
  const owner = "x'); DROP TABLE agents; --"
  const res = await post(agentBody({ owner }))
  t.equal(res.statusCode, 201, res.body)
  const list = await app.inject({ method: 'GET', url: AGENTS, query: { owner }, headers: admin.headers })
  t.equal(list.statusCode, 200)
  t.same(list.json().data.map((agent: { agentId: string }) => agent.agentId), [res.json().agentId])
})

t.test('a 10 KB Authorization header is a 401, not a 5xx', async (t) => {
  const res = await app.inject({ method: 'GET', url: AGENTS, headers: { authorization: `Bearer ${KB10}` } })
  assertProblem(t, res, 401, 'UNAUTHORIZED')
})

t.test('a JSON body whose bytes are not UTF-8 is a 400 and nothing is created or changed, where it used to be stored with U+FFFD in place of the bad bytes', async (t) => {
  const before = await countAllAgents()
  const [head, tail] = JSON.stringify(agentBody({ owner: 'MARK' })).split('MARK')
  const withBytes = (bytes: number[]) => Buffer.concat([Buffer.from(`${head}x`), Buffer.from(bytes), Buffer.from(tail)])
  // Latin-1 é, a CESU-8 lone surrogate (U+D800), a truncated sequence
  for (const bytes of [[0xe9], [0xed, 0xa0, 0x80], [0xe2, 0x82]]) {
    const res = await app.inject({ method: 'POST', url: AGENTS, headers: json, payload: withBytes(bytes) })
    assertValidationError(t, res, 'body')
    t.match(res.json().detail, /UTF-8/)
  }
  t.equal(await countAllAgents(), before, 'nothing created')
  const { agent } = await seedAgent(app)
  const patched = await app.inject({ method: 'PATCH', url: agentUrl(agent.agentId), headers: json, payload: Buffer.concat([Buffer.from('{"owner":"x'), Buffer.from([0xff]), Buffer.from('"}')]) })
  assertValidationError(t, patched, 'body')
  t.equal((await agentRow(app, agent.agentId))?.owner, agent.owner, 'the owner is unchanged')
  // the same text sent as UTF-8 is accepted: the refusal is about the bytes, not the characters
  const valid = await app.inject({ method: 'POST', url: AGENTS, headers: json, payload: Buffer.from(JSON.stringify(agentBody({ owner: 'équipe' })), 'utf8') })
  t.equal(valid.statusCode, 201)
})
