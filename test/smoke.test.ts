import t from 'tap'
import { build, seedAdmin, agentBody } from './helper.js'

t.test('smoke', async (t) => {
  const app = await build(t)
  const { headers } = await seedAdmin(app)
  const res = await app.inject({ method: 'POST', url: '/api/v1/agents', headers, payload: agentBody() })
  t.equal(res.statusCode, 201, res.body)
  const h = await app.inject({ method: 'GET', url: '/health' })
  t.equal(h.statusCode, 200, h.body)
  const d = await app.inject({ method: 'GET', url: '/docs/json' })
  t.equal(d.statusCode, 200)
})
