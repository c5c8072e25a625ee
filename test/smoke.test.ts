import t from 'tap'
import pg from 'pg'
import { build, agentBody } from './helper.js'
import { bootstrapAdmin } from '../cli/bootstrap.js'

t.test('smoke', async (t) => {
  const app = await build(t)
  const client = new pg.Client({ connectionString: app.databaseUrl })
  await client.connect()
  const admin = await bootstrapAdmin(client, 'root@example.com')
  await client.end()
  const basic = 'Basic ' + Buffer.from(`${admin.clientId}:${admin.clientSecret}`).toString('base64')
  const tok = await app.inject({ method: 'POST', url: '/api/v1/token', headers: { authorization: basic }, payload: 'grant_type=client_credentials' , })
  t.equal(tok.statusCode, 400, tok.body)
  const tok2 = await app.inject({ method: 'POST', url: '/api/v1/token', headers: { authorization: basic, 'content-type': 'application/x-www-form-urlencoded' }, payload: 'grant_type=client_credentials' })
  t.equal(tok2.statusCode, 200, tok2.body)
  const at = tok2.json().access_token
  const headers = { authorization: `Bearer ${at}` }
  const res = await app.inject({ method: 'POST', url: '/api/v1/agents', headers, payload: agentBody() })
  t.equal(res.statusCode, 201, res.body)
  const intro = await app.inject({ method: 'POST', url: '/api/v1/token/introspect', headers, payload: { token: at } })
  t.equal(intro.statusCode, 200, intro.body)
  t.equal(intro.json().active, true, intro.body)
  const rv = await app.inject({ method: 'POST', url: '/api/v1/token/revoke', headers: { authorization: basic }, payload: { token: at } })
  t.equal(rv.statusCode, 200, rv.body)
  const res2 = await app.inject({ method: 'GET', url: '/api/v1/agents', headers })
  t.equal(res2.statusCode, 401, res2.body)
  const cred = await app.inject({ method: 'POST', url: `/api/v1/agents/${res.json().agentId}/credentials`, headers: { authorization: basic } })
  t.equal(cred.statusCode, 401, cred.body)
  const h = await app.inject({ method: 'GET', url: '/health' })
  t.equal(h.statusCode, 200, h.body)
  const d = await app.inject({ method: 'GET', url: '/.well-known/oauth-authorization-server' })
  t.equal(d.statusCode, 200, d.body)
  const j = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.equal(j.statusCode, 200, j.body)
})
