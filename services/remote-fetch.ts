/**
 * Fetching JSON documents at URLs that others choose (an agent's jwksUri, a federated issuer's
 * JWKS and OIDC discovery document) without letting them aim the IdP at its own network (SSRF):
 * https only, every resolved address must be public, the connection goes to the address that was
 * checked (no second DNS answer can swap it), redirects stay on the same origin, and size and time
 * are bounded. Every failure is a RemoteDocumentError whose message names only the host and the
 * reason, so that it can be shown to the API caller who supplied the URL.
 */
import { lookup as resolveAll } from 'node:dns/promises'
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { isIP, type LookupFunction } from 'node:net'
import { createSecureContext, getCACertificates, type SecureContext } from 'node:tls'
import { isPublicAddress } from '../lib/net.js'
import { utf8Text } from '../lib/utf8.js'

export type RemoteDocumentReason =
  'not_https' | 'private_address' | 'dns' | 'timeout' | 'too_large' | 'http_status' | 'redirect' |
  'not_json' | 'tls' | 'network' | 'invalid'

export class RemoteDocumentError extends Error {
  constructor (public readonly reason: RemoteDocumentReason, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'RemoteDocumentError'
  }
}

export interface FetchPolicy {
  /** Lets a resolved address be loopback or private: for tests and closed deployments only. */
  allowPrivateNetworks: boolean
  /** Extra trusted CA certificate(s), PEM: added to Node's default roots, not replacing them. */
  ca?: string
  /** The whole fetch: DNS, connect, TLS, every redirect and the body. */
  timeoutMs: number
  maxBytes: number
}

export interface FetchedJson { json: unknown, maxAgeSeconds: number | null }

interface ResolvedAddress { address: string, family: number }
interface Answer { status: number, headers: IncomingHttpHeaders, body: Buffer | null }

const MAX_REDIRECTS = 2
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308])
const ACCEPT = 'application/json, application/jwk-set+json'

export async function fetchJson (url: string, policy: FetchPolicy): Promise<FetchedJson> {
  const target = parseTarget(url)
  const answer = await withinDeadline(target.host, policy.timeoutMs, (signal) => fetchFollowingRedirects(target, policy, signal))
  if (answer.status !== 200 || answer.body === null) {
    throw new RemoteDocumentError('http_status', `${target.host}: answered HTTP ${answer.status}`)
  }
  return { json: parseJsonStrictly(answer.body, target.host), maxAgeSeconds: maxAgeOf(answer.headers) }
}

function parseTarget (url: string): URL {
  let target: URL
  try {
    target = new URL(url)
  } catch {
    throw new RemoteDocumentError('invalid', 'not a valid URL')
  }
  if (target.protocol !== 'https:') {
    throw new RemoteDocumentError('not_https', `${target.host === '' ? target.protocol : target.host}: only https URLs are fetched`)
  }
  // credentials in the URL would be sent nowhere, but a URL carrying them is a mistake worth refusing
  if (target.username !== '' || target.password !== '') {
    throw new RemoteDocumentError('invalid', `${target.host}: a URL with credentials is not fetched`)
  }
  return target
}

/** Runs work under one timer for the whole fetch; on expiry the signal tears down whatever is open. */
async function withinDeadline<T> (host: string, timeoutMs: number, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController()
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new RemoteDocumentError('timeout', `${host}: no complete answer within ${timeoutMs} ms`))
      controller.abort()
    }, timeoutMs)
  })
  try {
    // a DNS lookup cannot be cancelled: the race stops waiting for it all the same
    return await Promise.race([work(controller.signal), expired])
  } finally {
    clearTimeout(timer)
    controller.abort()
  }
}

async function fetchFollowingRedirects (start: URL, policy: FetchPolicy, signal: AbortSignal): Promise<Answer> {
  // redirects stay on the same origin, so the addresses checked once serve every hop (no rebinding between hops)
  const addresses = await resolveChecked(start, policy)
  let target = start
  for (let redirects = 0; ; redirects += 1) {
    // a lookup that outlived the deadline must not start a connection nobody waits for
    signal.throwIfAborted()
    const answer = await requestOnce(target, addresses, policy, signal)
    if (!REDIRECT_STATUSES.has(answer.status)) return answer
    if (redirects === MAX_REDIRECTS) {
      throw new RemoteDocumentError('redirect', `${start.host}: more than ${MAX_REDIRECTS} redirects`)
    }
    target = sameOriginRedirect(target, answer.headers.location)
  }
}

function sameOriginRedirect (from: URL, location: string | undefined): URL {
  let next: URL | null = null
  try {
    next = location === undefined ? null : new URL(location, from)
  } catch {}
  if (next === null || next.protocol !== 'https:' || next.origin !== from.origin || next.username !== '' || next.password !== '') {
    throw new RemoteDocumentError('redirect', `${from.host}: redirects only within the same https origin are followed`)
  }
  return next
}

/** Every address the host resolves to, refused if any is not public: the connection may use any of them. */
async function resolveChecked (target: URL, policy: FetchPolicy): Promise<ResolvedAddress[]> {
  const hostname = bareHostname(target)
  const family = isIP(hostname)
  let addresses: ResolvedAddress[]
  if (family !== 0) {
    addresses = [{ address: hostname, family }]
  } else {
    try {
      addresses = await resolveAll(hostname, { all: true, verbatim: true })
    } catch (error) {
      throw new RemoteDocumentError('dns', `${target.host}: the host name does not resolve`, { cause: error })
    }
    if (addresses.length === 0) throw new RemoteDocumentError('dns', `${target.host}: the host name does not resolve`)
  }
  if (!policy.allowPrivateNetworks && !addresses.every(({ address }) => isPublicAddress(address))) {
    throw new RemoteDocumentError('private_address', `${target.host}: resolves to an address that is not public`)
  }
  return addresses
}

/** The URL's host without the brackets of an IPv6 literal. */
function bareHostname (target: URL): string {
  const { hostname } = target
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname
}

/** A lookup that answers with the addresses already checked, whatever DNS says by now. */
function pinnedLookup (addresses: ResolvedAddress[]): LookupFunction {
  return (_hostname, options, callback) => {
    if (options.all === true) {
      callback(null, addresses)
    } else {
      const [first] = addresses as [ResolvedAddress]
      callback(null, first.address, first.family)
    }
  }
}

const secureContexts = new Map<string, SecureContext>()

/** Node's default roots plus the policy's CA: `ca` alone would replace the roots. Built once per CA. */
function secureContextFor (ca: string): SecureContext {
  let context = secureContexts.get(ca)
  if (context === undefined) {
    context = createSecureContext({ ca: [...getCACertificates('default'), ca] })
    secureContexts.set(ca, context)
  }
  return context
}

function requestOnce (target: URL, addresses: ResolvedAddress[], policy: FetchPolicy, signal: AbortSignal): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = httpsRequest({
      host: bareHostname(target), // also the name the certificate is checked against (and SNI)
      port: target.port === '' ? 443 : Number(target.port),
      path: `${target.pathname}${target.search}`,
      method: 'GET',
      headers: { accept: ACCEPT, 'accept-encoding': 'identity', 'user-agent': 'agentidp' },
      agent: false, // a fresh connection each time: no pooled socket outlives its address check
      lookup: pinnedLookup(addresses),
      ...(policy.ca === undefined ? {} : { secureContext: secureContextFor(policy.ca) })
    })
    const abort = (): void => { request.destroy() }
    signal.addEventListener('abort', abort, { once: true })
    request.once('close', () => { signal.removeEventListener('abort', abort) })
    request.once('error', (error) => { reject(connectionError(error, target.host)) })
    request.once('response', (response) => {
      readAnswer(response, target.host, policy.maxBytes).then(resolve, (error: unknown) => {
        request.destroy()
        reject(connectionError(error, target.host))
      })
    })
    request.end()
  })
}

async function readAnswer (response: IncomingMessage, host: string, maxBytes: number): Promise<Answer> {
  const status = response.statusCode ?? 0
  if (status !== 200) {
    response.destroy() // the body of a redirect or an error is never read
    return { status, headers: response.headers, body: null }
  }
  const tooLarge = new RemoteDocumentError('too_large', `${host}: the document is larger than ${maxBytes} bytes`)
  if (Number(response.headers['content-length']) > maxBytes) {
    response.destroy()
    throw tooLarge
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of response as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > maxBytes) throw tooLarge // leaving the loop destroys the stream
    chunks.push(chunk)
  }
  return { status, headers: response.headers, body: Buffer.concat(chunks, size) }
}

function connectionError (error: unknown, host: string): RemoteDocumentError {
  if (error instanceof RemoteDocumentError) return error
  if (isTlsFailure(error)) {
    return new RemoteDocumentError('tls', `${host}: the TLS connection failed (certificate not trusted or not for this host)`, { cause: error })
  }
  return new RemoteDocumentError('network', `${host}: the connection failed`, { cause: error })
}

/** Certificate verification codes (DEPTH_ZERO_SELF_SIGNED_CERT, ERR_TLS_CERT_ALTNAME_INVALID, …) and OpenSSL's own errors. */
function isTlsFailure (error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false
  const { code, library } = error as { code?: unknown, library?: unknown }
  if (typeof library === 'string') return true
  return typeof code === 'string' && (code.includes('CERT') || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_'))
}

function parseJsonStrictly (body: Buffer, host: string): unknown {
  // utf8Text refuses bytes that are not UTF-8 instead of turning them into U+FFFD
  const text = utf8Text(body)
  if (text !== null) {
    try {
      return JSON.parse(text)
    } catch {}
  }
  throw new RemoteDocumentError('not_json', `${host}: the document is not UTF-8 JSON`)
}

/**
 * How long the answer may be reused, in seconds: Cache-Control's max-age (no-store and no-cache
 * mean 0), else Expires counted from the server's own Date (so clock skew does not matter), else null.
 */
export function maxAgeOf (headers: IncomingHttpHeaders, now = Date.now()): number | null {
  const cacheControl = headers['cache-control']
  if (cacheControl !== undefined) {
    const directives = cacheControl.toLowerCase().split(',').map((directive) => directive.trim())
    if (directives.includes('no-store') || directives.includes('no-cache')) return 0
    for (const directive of directives) {
      const maxAge = /^max-age="?(\d+)"?$/.exec(directive)
      if (maxAge !== null) return Number(maxAge[1])
    }
  }
  const expires = headers.expires
  if (expires === undefined) return null
  const expiresAt = Date.parse(expires)
  if (Number.isNaN(expiresAt)) return 0 // RFC 9111 §5.3: an invalid Expires means already expired
  const serverNow = Date.parse(headers.date ?? '')
  return Math.max(0, Math.floor((expiresAt - (Number.isNaN(serverNow) ? now : serverNow)) / 1000))
}
