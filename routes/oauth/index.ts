import { parse as parseForm } from 'fast-querystring'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { OAuthError } from '../../lib/errors.js'
import { repeatedTopLevelNames } from '../../lib/json-keys.js'
import { utf8Text } from '../../lib/utf8.js'
import token from './token.js'
import introspect from './introspect.js'
import revoke from './revoke.js'
import wellKnown from './well-known.js'

/**
 * The OAuth 2.0 endpoints, in their own encapsulated scope: only here are form-encoded bodies
 * parsed (RFC 6749 requires them), and only here does a repeated parameter mean invalid_request
 * (unless the route names it in `config.repeatableParameters`).
 */
function refuseRepeatedParameters (request: FastifyRequest, _reply: FastifyReply, done: (error?: Error) => void): void {
  const body = request.body
  // a route may take some parameters more than once (the token endpoint's `resource`, RFC 8707 §2)
  const repeatable = request.routeOptions.config?.repeatableParameters ?? []
  const repeated = body === null || typeof body !== 'object'
    ? []
    : Object.entries(body).filter(([name, value]) => Array.isArray(value) && !repeatable.includes(name)).map(([name]) => name)
  done(repeated.length > 0 ? new OAuthError(400, 'invalid_request', `parameter repeated: ${repeated.join(', ')}`) : undefined)
}

/**
 * RFC 6749 §3.2: "Parameters sent without a value MUST be treated as if they were omitted from the
 * request." (Swagger UI's form sends every field, the empty ones too.) A repeated name stays an
 * array, to be refused as repeated.
 */
function withoutEmptyParameters (form: Record<string, string | string[]>): Record<string, string | string[]> {
  for (const [name, value] of Object.entries(form)) if (value === '') Reflect.deleteProperty(form, name)
  return form
}

/** Bytes that are not UTF-8 would be decoded with replacement characters: refused instead (lib/utf8.ts). */
function notUtf8 (): OAuthError {
  return new OAuthError(400, 'invalid_request', 'the body is not UTF-8')
}

const oauth: FastifyPluginAsync = async function oauthRoutes (app) {
  // forms: fast-querystring (what @fastify/formbody runs) on bytes that are UTF-8; a repeated name becomes an array
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'buffer' }, function parseOAuthForm (_request, body, done) {
    const text = utf8Text(body as Buffer)
    if (text === null) return done(notUtf8(), undefined)
    done(null, withoutEmptyParameters(parseForm(text) as Record<string, string | string[]>))
  })
  app.addHook('preValidation', refuseRepeatedParameters)
  // JSON bodies here: Fastify's own parser (prototype-poisoning checks included), after a look for repeated names
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, function parseOAuthJson (request, body, done) {
    const text = utf8Text(body as Buffer)
    if (text === null) return done(notUtf8(), undefined)
    const repeated = repeatedTopLevelNames(text)
    if (repeated.length > 0) return done(new OAuthError(400, 'invalid_request', `parameter repeated: ${repeated.join(', ')}`), undefined)
    parseJson(request, text, done)
  })
  await app.register(token)
  await app.register(introspect)
  await app.register(revoke)
  await app.register(wellKnown)
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** OAuth parameters this route takes more than once (a form name repeated, or a JSON array): the others are invalid_request */
    repeatableParameters?: readonly string[]
  }
}

export default oauth
