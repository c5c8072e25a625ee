import dns from 'node:dns'
import { createServer as createHttpServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import {
  createDocumentCache, discoverJwksUri, fetchJson, RemoteDocumentError, type DocumentCachePolicy, type FetchPolicy, type RemoteDocumentReason
} from '../../services/remote-document.js'
import { json, selfSignedCertificate, startHttpsServer, startSilentServer, type TestServer } from '../support/https-fixture.js'

const certificate = await selfSignedCertificate('DNS:localhost,IP:127.0.0.1')
const server = await startHttpsServer(certificate)
// the same trusted certificate on another port: a redirect there is refused although it would work
const otherPort = await startHttpsServer(certificate)
t.teardown(async () => { await Promise.all([server.close(), otherPort.close()]) })

const TIMEOUT_MS = 1000
/** Generous on purpose: a loaded CI machine must not turn a bounded wait into a failure. */
const BOUNDED_MS = TIMEOUT_MS + 5000

const policy: FetchPolicy = { allowPrivateNetworks: true, ca: certificate.cert, timeoutMs: TIMEOUT_MS, maxBytes: 1024 }

let pathCounter = 0
/** A fresh path on the server for one test, with its route. */
function route (server: TestServer, handler: Parameters<TestServer['routes']['set']>[1]): { path: string, url: string } {
  pathCounter += 1
  const path = `/doc-${pathCounter}`
  server.routes.set(path, handler)
  return { path, url: `${server.origin}${path}` }
}

async function refusal (promise: Promise<unknown>): Promise<RemoteDocumentError> {
  try {
    await promise
  } catch (error) {
    if (error instanceof RemoteDocumentError) return error
    throw error
  }
  throw new Error('expected a RemoteDocumentError, got a document')
}

async function refusedWith (t: Test, promise: Promise<unknown>, reason: RemoteDocumentReason): Promise<RemoteDocumentError> {
  const error = await refusal(promise)
  t.equal(error.reason, reason, error.message)
  return error
}

async function elapsed<T> (work: () => Promise<T>): Promise<{ result: T, ms: number }> {
  const started = performance.now()
  const result = await work()
  return { result, ms: performance.now() - started }
}

/** Date.now() moved forward by the test; the cache reads nothing else. */
function fakeClock (t: Test): { advance: (seconds: number) => void } {
  const realNow = Date.now
  let offset = 0
  Date.now = () => realNow() + offset
  t.teardown(() => { Date.now = realNow })
  return { advance: (seconds) => { offset += seconds * 1000 } }
}

t.test('fetchJson', async (t) => {
  t.test('fetches a JSON document over https, asking for JSON and sending no cookie or credentials', async (t) => {
    const { path, url } = route(server, json({ keys: [] }, { 'cache-control': 'public, max-age=120' }))
    const fetched = await fetchJson(url, policy)
    t.same(fetched, { json: { keys: [] }, maxAgeSeconds: 120 })
    const headers = server.lastRequest(path)?.headers ?? {}
    t.match(headers.accept, /application\/json/)
    t.match(headers.accept, /application\/jwk-set\+json/)
    t.equal(headers.cookie, undefined)
    t.equal(headers.authorization, undefined)
  })

  t.test('reads the TTL: no-store and no-cache are 0, no header is null, Expires counts from the server\'s Date', async (t) => {
    const date = 'Tue, 01 Dec 2026 10:00:00 GMT'
    const cases: Array<[Record<string, string>, number | null]> = [
      [{ 'cache-control': 'no-store' }, 0],
      [{ 'cache-control': 'max-age=300, no-cache' }, 0],
      [{ 'cache-control': 'MAX-AGE=45' }, 45],
      [{}, null],
      [{ date, expires: 'Tue, 01 Dec 2026 10:10:00 GMT' }, 600],
      [{ date, expires: 'Tue, 01 Dec 2026 10:10:00 GMT', 'cache-control': 'max-age=5' }, 5],
      [{ expires: 'not a date' }, 0]
    ]
    for (const [headers, expected] of cases) {
      const { url } = route(server, json({ ok: true }, headers))
      t.equal((await fetchJson(url, policy)).maxAgeSeconds, expected, JSON.stringify(headers))
    }
  })

  t.test('refuses an http URL without connecting, even on loopback with private networks allowed', async (t) => {
    let requests = 0
    const plain = createHttpServer((_request, response) => { requests += 1; response.end('{}') })
    await new Promise<void>((resolve) => { plain.listen(0, '127.0.0.1', resolve) })
    t.teardown(() => { plain.close() })
    const { port } = plain.address() as AddressInfo
    await refusedWith(t, fetchJson(`http://127.0.0.1:${port}/jwks`, policy), 'not_https')
    t.equal(requests, 0)
  })

  t.test('refuses loopback, private and metadata address literals without connecting, unless private networks are allowed', async (t) => {
    const strict = { ...policy, allowPrivateNetworks: false }
    const { path } = route(server, json({ ok: true }))
    for (const host of ['127.0.0.1', '[::1]', '[::ffff:127.0.0.1]', '169.254.169.254', '10.0.0.1', '0x7f.1']) {
      await refusedWith(t, fetchJson(`https://${host}:${server.port}${path}`, strict), 'private_address')
    }
    t.equal(server.hits(path), 0)
    t.same((await fetchJson(`https://127.0.0.1:${server.port}${path}`, policy)).json, { ok: true }, 'allowed when private networks are')
  })

  t.test('refuses a host name that resolves to loopback, naming the host but not its address', async (t) => {
    const { path } = route(server, json({ ok: true }))
    const error = await refusedWith(t, fetchJson(`https://localhost:${server.port}${path}`, { ...policy, allowPrivateNetworks: false }), 'private_address')
    t.match(error.message, `localhost:${server.port}`)
    t.notMatch(error.message, '127.0.0.1')
    t.equal(server.hits(path), 0)
  })

  t.test('connects to the address it checked: a different second DNS answer is never used', async (t) => {
    const { url } = route(server, json({ pinned: true }))
    const realLookup = dns.lookup
    // what a rebinding resolver would answer at connection time: nothing listens on 127.0.0.2
    const rebound = ((hostname: string, options: dns.LookupOptions, callback: (...args: unknown[]) => void): void => {
      if (hostname !== 'localhost') { realLookup(hostname, options, callback as never); return }
      if (options.all === true) callback(null, [{ address: '127.0.0.2', family: 4 }])
      else callback(null, '127.0.0.2', 4)
    }) as typeof dns.lookup
    dns.lookup = rebound
    t.teardown(() => { dns.lookup = realLookup })
    const fetched = await fetchJson(url.replace('127.0.0.1', 'localhost'), policy)
    t.same(fetched.json, { pinned: true })
  })

  t.test('refuses a host name that does not resolve', async (t) => {
    await refusedWith(t, fetchJson('https://no-such-host.invalid/jwks', policy), 'dns')
  })

  t.test('refuses a URL carrying credentials', async (t) => {
    const { path } = route(server, json({ ok: true }))
    await refusedWith(t, fetchJson(`https://user:secret@127.0.0.1:${server.port}${path}`, policy), 'invalid')
    t.equal(server.hits(path), 0)
  })

  t.test('accepts a body of exactly maxBytes', async (t) => {
    const body = `"${'a'.repeat(policy.maxBytes - 2)}"`
    const { url } = route(server, json(body))
    t.equal((await fetchJson(url, policy)).json, 'a'.repeat(policy.maxBytes - 2))
  })

  t.test('refuses a body whose Content-Length exceeds maxBytes at once, without waiting for it', async (t) => {
    // announces a large body and sends none of it: only the header can end this before the timeout
    const { url } = route(server, (_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json', 'content-length': String(policy.maxBytes + 1) })
      response.flushHeaders()
    })
    const { result, ms } = await elapsed(() => refusal(fetchJson(url, policy)))
    t.equal(result.reason, 'too_large')
    t.ok(ms < BOUNDED_MS, `ended after ${Math.round(ms)} ms`)
  })

  t.test('refuses an endless body without Content-Length as soon as it passes maxBytes', async (t) => {
    const { url } = route(server, (_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' })
      response.write('[')
      const timer = setInterval(() => { response.write('1,'.repeat(100)) }, 5)
      response.on('close', () => clearInterval(timer))
    })
    const { result, ms } = await elapsed(() => refusal(fetchJson(url, { ...policy, timeoutMs: 30_000 })))
    t.equal(result.reason, 'too_large')
    t.ok(ms < BOUNDED_MS, `ended after ${Math.round(ms)} ms`)
  })

  t.test('gives up on a server that sends its headers and then stalls, after about timeoutMs, and closes the connection', async (t) => {
    let closed!: Promise<void>
    const { url } = route(server, (_request, response) => {
      closed = new Promise((resolve) => { response.on('close', resolve) })
      response.writeHead(200, { 'content-type': 'application/json' })
      response.write('{"keys": [')
    })
    const { result, ms } = await elapsed(() => refusal(fetchJson(url, policy)))
    t.equal(result.reason, 'timeout')
    t.ok(ms >= TIMEOUT_MS - 50, `not before the timeout: ${Math.round(ms)} ms`)
    t.ok(ms < BOUNDED_MS, `ended after ${Math.round(ms)} ms`)
    const gone = await Promise.race([closed.then(() => true), new Promise((resolve) => setTimeout(resolve, BOUNDED_MS, false))])
    t.ok(gone, 'the server saw the connection closed')
  })

  t.test('gives up on a server that accepts the connection and never answers the TLS handshake', async (t) => {
    const silent = await startSilentServer()
    t.teardown(silent.close)
    const { result, ms } = await elapsed(() => refusal(fetchJson(`https://127.0.0.1:${silent.port}/jwks`, policy)))
    t.equal(result.reason, 'timeout')
    t.ok(ms < BOUNDED_MS, `ended after ${Math.round(ms)} ms`)
  })

  t.test('follows two same-origin redirects, relative and absolute', async (t) => {
    const target = route(server, json({ moved: true }))
    const second = route(server, (_request, response) => { response.writeHead(308, { location: target.url }).end() })
    const first = route(server, (_request, response) => { response.writeHead(302, { location: second.path }).end() })
    t.same((await fetchJson(first.url, policy)).json, { moved: true })
    t.equal(server.hits(target.path), 1)
  })

  t.test('refuses a third redirect', async (t) => {
    const target = route(server, json({ moved: true }))
    let next = target.path
    for (let hop = 0; hop < 3; hop += 1) {
      const location = next
      next = route(server, (_request, response) => { response.writeHead(301, { location }).end() }).path
    }
    await refusedWith(t, fetchJson(`${server.origin}${next}`, policy), 'redirect')
    t.equal(server.hits(target.path), 0)
  })

  t.test('refuses a redirect to another host, another port or http, even where the target would answer', async (t) => {
    const elsewhere = route(otherPort, json({ moved: true }))
    const sameHere = route(server, json({ moved: true }))
    const locations = [
      `https://localhost:${server.port}${sameHere.path}`, // same address, another host name
      elsewhere.url,
      `http://127.0.0.1:${server.port}${sameHere.path}`
    ]
    for (const location of locations) {
      const { url } = route(server, (_request, response) => { response.writeHead(302, { location }).end() })
      await refusedWith(t, fetchJson(url, policy), 'redirect')
    }
    t.equal(otherPort.hits(elsewhere.path), 0)
    t.equal(server.hits(sameHere.path), 0)
  })

  t.test('refuses any status but 200, naming it (404, 204); a redirect without Location is a refused redirect', async (t) => {
    const error = await refusedWith(t, fetchJson(`${server.origin}/nothing-here`, policy), 'http_status')
    t.match(error.message, '404')
    const { url } = route(server, (_request, response) => { response.writeHead(204).end() })
    t.match((await refusedWith(t, fetchJson(url, policy), 'http_status')).message, '204')
    const bare = route(server, (_request, response) => { response.writeHead(302).end() })
    await refusedWith(t, fetchJson(bare.url, policy), 'redirect')
  })

  t.test('refuses a body that is not JSON', async (t) => {
    const { url } = route(server, json('<html>not json</html>'))
    await refusedWith(t, fetchJson(url, policy), 'not_json')
  })

  t.test('refuses JSON that is not valid UTF-8 rather than repairing it', async (t) => {
    // {"kid":"<0xff>"}: a lenient decoder would turn the byte into U+FFFD and parse it
    const { url } = route(server, json(Buffer.concat([Buffer.from('{"kid":"'), Buffer.from([0xff]), Buffer.from('"}')])))
    await refusedWith(t, fetchJson(url, policy), 'not_json')
  })

  t.test('refuses a certificate that is not trusted (no ca in the policy)', async (t) => {
    const { path, url } = route(server, json({ ok: true }))
    const { ca: _ca, ...untrusting } = policy
    const error = await refusedWith(t, fetchJson(url, untrusting), 'tls')
    t.equal(server.hits(path), 0)
    t.notMatch(error.message, /\n\s+at /, 'no stack in the message')
  })

  t.test('refuses a trusted certificate issued for another host name', async (t) => {
    const foreign = await selfSignedCertificate('DNS:jwks.example.com')
    const impostor = await startHttpsServer(foreign)
    t.teardown(impostor.close)
    const { path, url } = route(impostor, json({ ok: true }))
    await refusedWith(t, fetchJson(url, { ...policy, ca: foreign.cert }), 'tls')
    t.equal(impostor.hits(path), 0)
  })

  t.test('a ca of several concatenated PEMs trusts each of them', async (t) => {
    const foreign = await selfSignedCertificate('DNS:jwks.example.com')
    const { url } = route(server, json({ ok: true }))
    t.same((await fetchJson(url, { ...policy, ca: `${foreign.cert}${certificate.cert}` })).json, { ok: true })
  })
})

const cachePolicy: DocumentCachePolicy = {
  ...policy,
  minCacheSeconds: 60,
  maxCacheSeconds: 3600,
  defaultCacheSeconds: 300,
  refreshCooldownSeconds: 30,
  maxEntries: 10
}

/** A route whose document is a counter of its own requests: { n: 1 }, { n: 2 }, … */
function countingRoute (server: TestServer, headers: Record<string, string> = {}): { path: string, url: string } {
  let n = 0
  return route(server, (request, response) => { n += 1; json({ n }, headers)(request, response) })
}

const asIs = (json: unknown): unknown => json

t.test('createDocumentCache', async (t) => {
  t.test('keeps a document for its max-age clamped to [min, max], or the default without one', async (t) => {
    const clock = fakeClock(t)
    const cache = createDocumentCache(cachePolicy, asIs)
    const short = countingRoute(server, { 'cache-control': 'max-age=5' })
    const long = countingRoute(server, { 'cache-control': 'max-age=999999' })
    const silent = countingRoute(server)
    const uncacheable = countingRoute(server, { 'cache-control': 'no-store' })
    for (const { url } of [short, long, silent, uncacheable]) t.same(await cache.get(url), { n: 1 })

    clock.advance(59) // max-age 5 and no-store are raised to the minimum, 60
    t.same(await cache.get(short.url), { n: 1 })
    t.same(await cache.get(uncacheable.url), { n: 1 })
    clock.advance(2)
    t.same(await cache.get(short.url), { n: 2 })
    t.same(await cache.get(uncacheable.url), { n: 2 })

    clock.advance(298 - 61) // no header: the default, 300
    t.same(await cache.get(silent.url), { n: 1 })
    clock.advance(3)
    t.same(await cache.get(silent.url), { n: 2 })

    clock.advance(3599 - 301) // a huge max-age is cut to the maximum, 3600
    t.same(await cache.get(long.url), { n: 1 })
    clock.advance(2)
    t.same(await cache.get(long.url), { n: 2 })
  })

  t.test('concurrent gets of one URL share a single fetch', async (t) => {
    const cache = createDocumentCache(cachePolicy, asIs)
    let n = 0
    const { path, url } = route(server, (request, response) => {
      n += 1
      setTimeout(() => { json({ n })(request, response) }, 100)
    })
    const documents = await Promise.all(Array.from({ length: 10 }, () => cache.get(url)))
    t.same(documents, Array.from({ length: 10 }, () => ({ n: 1 })))
    t.equal(server.hits(path), 1)
  })

  t.test('refresh refetches, but not again within the cooldown', async (t) => {
    const clock = fakeClock(t)
    const cache = createDocumentCache(cachePolicy, asIs)
    const { url } = countingRoute(server, { 'cache-control': 'max-age=3600' })
    t.same(await cache.get(url), { n: 1 })
    t.same(await cache.get(url, { refresh: true }), { n: 1 }, 'fetched just now: the cached value')
    clock.advance(29)
    t.same(await cache.get(url, { refresh: true }), { n: 1 }, 'still within the cooldown')
    clock.advance(2)
    t.same(await cache.get(url, { refresh: true }), { n: 2 }, 'after the cooldown: refetched')
    t.same(await cache.get(url, { refresh: true }), { n: 2 }, 'and the cooldown starts again')
    t.same(await cache.get(url), { n: 2 }, 'a plain get keeps the refetched value')
  })

  t.test('serves a cached value when a refetch fails, until it is maxCacheSeconds old; then the error propagates', async (t) => {
    const clock = fakeClock(t)
    const cache = createDocumentCache(cachePolicy, asIs)
    let failing = false
    let failures = 0
    let n = 0
    const { url } = route(server, (request, response) => {
      if (failing) { failures += 1; response.writeHead(503).end(); return }
      n += 1
      json({ n }, { 'cache-control': 'max-age=600' })(request, response)
    })
    t.same(await cache.get(url), { n: 1 })
    failing = true
    clock.advance(601)
    t.same(await cache.get(url), { n: 1 }, 'expired, the host fails: served stale')
    t.equal(failures, 1)
    t.same(await cache.get(url), { n: 1 }, 'within the cooldown after a failure: served stale without asking the host again')
    t.equal(failures, 1)
    clock.advance(31)
    t.same(await cache.get(url, { refresh: true }), { n: 1 }, 'after the cooldown it asks again, and serves stale again on failure')
    t.equal(failures, 2)
    clock.advance(3600 - 632 + 1)
    await refusedWith(t, cache.get(url), 'http_status')
    failing = false
    t.same(await cache.get(url), { n: 2 }, 'once the host answers again, a fresh value')
  })

  t.test('a document that parse rejects is refused as invalid with the parse error\'s message, and not cached', async (t) => {
    let parsed = 0
    const cache = createDocumentCache(cachePolicy, (json) => {
      parsed += 1
      if (typeof json !== 'object' || json === null || !('keys' in json)) throw new Error('not a JWK Set: no keys')
      return json
    })
    const { path, url } = route(server, json({ n: 1 }))
    const error = await refusedWith(t, cache.get(url), 'invalid')
    t.equal(error.message, 'not a JWK Set: no keys')
    await refusedWith(t, cache.get(url), 'invalid')
    t.equal(server.hits(path), 2, 'fetched again: nothing was cached')
    t.equal(parsed, 2)
  })

  t.test('holds at most maxEntries documents, evicting the oldest', async (t) => {
    const cache = createDocumentCache({ ...cachePolicy, maxEntries: 2 }, asIs)
    const [a, b, c] = [countingRoute(server), countingRoute(server), countingRoute(server)]
    for (const { url } of [a, b, c]) await cache.get(url)
    t.same(await cache.get(c.url), { n: 1 })
    t.same(await cache.get(b.url), { n: 1 })
    t.same(await cache.get(a.url), { n: 2 }, 'the oldest was evicted and is fetched again')
  })

  t.test('forget drops a document: the next get fetches it again', async (t) => {
    const cache = createDocumentCache(cachePolicy, asIs)
    const { url } = countingRoute(server)
    t.same(await cache.get(url), { n: 1 })
    cache.forget(url)
    t.same(await cache.get(url), { n: 2 })
  })
})

t.test('discoverJwksUri', async (t) => {
  const issuer = `${server.origin}/tenant`
  const jwksUri = `${server.origin}/tenant/jwks`

  t.test('returns the jwks_uri of a discovery document that names the issuer exactly', async (t) => {
    server.routes.set('/tenant/.well-known/openid-configuration', json({ issuer, jwks_uri: jwksUri }))
    t.equal(await discoverJwksUri(issuer, policy), jwksUri)
    t.equal(await discoverJwksUri(`${issuer}/`, policy).catch((error: RemoteDocumentError) => error.reason), 'invalid',
      'the trailing slash is dropped from the URL, but the issuer must still match exactly')
  })

  t.test('refuses a discovery document that names another issuer', async (t) => {
    const other = `${server.origin}/other`
    server.routes.set('/other/.well-known/openid-configuration', json({ issuer: 'https://accounts.example.com', jwks_uri: jwksUri }))
    await refusedWith(t, discoverJwksUri(other, policy), 'invalid')
  })

  t.test('refuses a jwks_uri that is missing or not https', async (t) => {
    for (const [name, document] of [['plain', { jwks_uri: 'http://127.0.0.1/jwks' }], ['none', {}]] as const) {
      const tenant = `${server.origin}/${name}`
      server.routes.set(`/${name}/.well-known/openid-configuration`, json({ issuer: tenant, ...document }))
      await refusedWith(t, discoverJwksUri(tenant, policy), 'invalid')
    }
  })
})
