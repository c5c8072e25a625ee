import t from 'tap'
import { build, LogCapture, seedAdmin } from '../../helper.js'
import {
  accessToken, allAuditText, basic, credentialsUrl, credentialUrl, INTROSPECT, oauthPost, registerClient, requestToken, REVOKE
} from './support.js'

/**
 * A whole OAuth and credentials flow with logging on: no secret (right or wrong) and no access token
 * may appear in a log line, an audit row or an error body.
 */
const logs = new LogCapture()
const app = await build(t, { logStream: logs })
const admin = await seedAdmin(app)

t.test('no secret or token appears in logs, audit rows or error bodies', async (t) => {
  const client = await registerClient(app, admin.headers, { capabilities: ['docs:read', 'tokens:read'] })
  const wrongSecret = `sk_live_${'A'.repeat(64)}`
  const bodies: string[] = []
  const tokens: string[] = []

  tokens.push(await accessToken(app, client))
  tokens.push(await accessToken(app, client, { auth: 'post', json: true }))
  bodies.push((await requestToken(app, { agentId: client.agentId, secret: wrongSecret })).body)
  bodies.push((await requestToken(app, { agentId: client.agentId, secret: wrongSecret }, { auth: 'post' })).body)
  bodies.push((await requestToken(app, client, { fields: { client_id: client.agentId, client_secret: client.secret } })).body)
  bodies.push((await requestToken(app, client, { fields: { scope: 'agents:write' } })).body)
  bodies.push((await oauthPost(app, INTROSPECT, { fields: { token: tokens[0] }, headers: { authorization: basic(client.agentId, wrongSecret) } })).body)
  bodies.push((await oauthPost(app, INTROSPECT, { fields: { token: tokens[0] }, headers: { authorization: `Bearer ${tokens[1]}x` } })).body)
  bodies.push((await oauthPost(app, INTROSPECT, { fields: { token: tokens[0] }, headers: { authorization: basic(client.agentId, client.secret) } })).body)
  bodies.push((await oauthPost(app, REVOKE, { fields: { token: tokens[0] }, headers: { authorization: `Bearer ${tokens[1]}` } })).body)
  bodies.push((await app.inject({ method: 'GET', url: '/api/v1/agents', headers: { authorization: `Bearer ${tokens[0]}` } })).body)
  const generated = await app.inject({ method: 'POST', url: credentialsUrl(client.agentId), headers: admin.headers })
  const rotated = await app.inject({ method: 'POST', url: `${credentialUrl(client.agentId, generated.json().credentialId)}/rotate`, headers: admin.headers })
  const secrets = [client.secret, wrongSecret, generated.json().clientSecret, rotated.json().clientSecret]

  const audit = await allAuditText(app)
  t.ok(logs.lines.length > 10, `requests were logged (${logs.lines.length} lines)`)
  for (const secret of secrets) {
    const random = secret.slice('sk_live_'.length)
    t.notOk(logs.text.includes(random), 'no secret in the logs')
    t.notOk(audit.includes(random), 'no secret in the audit rows')
    for (const body of bodies) t.notOk(body.includes(random), 'no secret in an error body')
  }
  for (const token of tokens) {
    const signature = token.split('.')[2]
    t.notOk(logs.text.includes(signature), 'no token in the logs')
    t.notOk(audit.includes(signature), 'no token in the audit rows')
    for (const body of bodies) t.notOk(body.includes(signature), 'no token in an error body')
  }
  t.notOk(logs.text.includes(admin.token.split('.')[2]), 'not the admin\'s token either')
})
