import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import t from 'tap'
import helmet from 'helmet'
import { build } from '../helper.js'

/** What helmet itself sends with the plugin's configuration, on a real socket. */
async function helmetOnASocket (): Promise<Record<string, string>> {
  const apply = helmet({ contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } } })
  const server = createServer((request: IncomingMessage, response: ServerResponse) => { apply(request, response, () => { response.end() }) })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  try {
    const { port } = server.address() as { port: number }
    const response = await fetch(`http://127.0.0.1:${port}/`)
    const transport = new Set(['date', 'connection', 'keep-alive', 'content-length', 'transfer-encoding'])
    return Object.fromEntries([...response.headers].filter(([name]) => !transport.has(name)))
  } finally {
    server.close()
  }
}

t.test('every reply carries exactly the headers helmet sends (recorded once at start, not recomputed)', async (t) => {
  const app = await build(t)
  const expected = await helmetOnASocket()
  t.ok(Object.keys(expected).length >= 10, 'helmet sends its set')
  for (const url of ['/health/live', '/.well-known/jwks.json', '/no-such-route']) {
    const res = await app.inject({ method: 'GET', url })
    const sent = Object.fromEntries(Object.keys(expected).map((name) => [name, res.headers[name]]))
    t.same(sent, expected, `${url}: helmet's headers, values included`)
  }
})

t.test('responses carry helmet\'s security headers and the request id', async (t) => {
  const app = await build(t)
  const res = await app.inject({ method: 'GET', url: '/health', headers: { 'x-request-id': 'probe-42' } })
  t.equal(res.headers['x-content-type-options'], 'nosniff')
  t.ok(res.headers['strict-transport-security'], 'HSTS')
  t.ok(res.headers['content-security-policy'], 'CSP')
  t.equal(res.headers['x-request-id'], 'probe-42')
})

t.test('JSON responses get the strictest content security policy; Swagger UI gets its own', async (t) => {
  const app = await build(t, { env: { DOCS_ENABLED: 'true' } })
  const api = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.equal(api.headers['content-security-policy'], "default-src 'none';frame-ancestors 'none'")
  const docs = await app.inject({ method: 'GET', url: '/docs' })
  t.equal(docs.statusCode, 200)
  t.match(String(docs.headers['content-security-policy']), /script-src 'self'/, 'the page may load its own scripts')
})

t.test('CORS allows exactly the configured origins', async (t) => {
  const app = await build(t, { env: { CORS_ORIGIN: 'https://console.example.com,https://ops.example.com' } })
  const preflight = (origin: string) => app.inject({
    method: 'OPTIONS',
    url: '/api/v1/agents',
    headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' }
  })
  const allowed = await preflight('https://ops.example.com')
  t.equal(allowed.headers['access-control-allow-origin'], 'https://ops.example.com')
  const refused = await preflight('https://evil.example.com')
  t.not(refused.headers['access-control-allow-origin'], 'https://evil.example.com')
})

t.test('CORS_ORIGIN defaults to any origin', async (t) => {
  const app = await build(t)
  const res = await app.inject({ method: 'GET', url: '/health', headers: { origin: 'https://anywhere.example' } })
  t.equal(res.headers['access-control-allow-origin'], '*')
})

t.test('a body over 64 KiB is refused with 413 before it is parsed', async (t) => {
  const app = await build(t)
  const res = await app.inject({ method: 'POST', url: '/api/v1/token', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ grant_type: 'x'.repeat(70 * 1024) }) })
  t.equal(res.statusCode, 413)
})
