import { Ajv, type ValidateFunction } from 'ajv'
import ajvFormats from 'ajv-formats'
import fc from 'fast-check'
import t from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { build, ISSUER, PLATFORM_SCOPES } from '../helper.js'
import { AGENTS, basic, bootstrap, type Client } from '../support/oauth-flow.js'
import { internalsIn, recordFigures } from './support.js'

/**
 * OpenAPI-driven fuzzing (issue 11). Every operation of /docs/json gets requests generated from its
 * own schemas with fast-check — valid ones, and ones broken in one place (a missing or unknown
 * field, a wrong type, a constraint crossed, a bad path or query parameter, a bad Authorization) —
 * plus fixed hostile cases (lone surrogates, NUL, huge numbers, deep nesting, prototype keys,
 * duplicate JSON keys, junk X-Forwarded-For behind a trusted proxy, odd instants, padded base64url
 * in Bearer tokens). Every answer must:
 *
 * - be no 5xx other than a 503 the operation documents;
 * - have a status the operation declares, and a body its declared schema accepts (the document's
 *   response schemas compiled with Ajv), as JSON;
 * - show no internals (stack frames, module paths, SQL, driver or runtime error text);
 * - refuse (4xx) whenever the request breaks the operation's declared request schema: body judged
 *   as sent, query and path coerced from text, as the server's own validator does.
 *
 * The run is seeded: RESILIENCE_SEED=<n> replays it; RESILIENCE_FUZZ_RUNS sets the requests per
 * operation and kind (valid / invalid).
 */

const SEED = Number(process.env.RESILIENCE_SEED ?? Math.floor(Math.random() * 2 ** 31))
const RUNS = Number(process.env.RESILIENCE_FUZZ_RUNS ?? 60)
t.comment(`fuzz seed ${SEED} (replay: RESILIENCE_SEED=${SEED} npm run test:resilience), ${RUNS} requests per operation and kind`)

// Limits off so that generated requests reach the handlers instead of a 429 after the 30th bad
// secret; X-Forwarded-For is believed from the injector's 127.0.0.1 so junk in it reaches the
// code that parses it.
const app = await build(t, {
  env: { TRUST_PROXY: '127.0.0.1', RATE_LIMIT_AUTH_FAILURES_PER_IP: '0', RATE_LIMIT_BEARER_FAILURES_PER_IP: '0', RATE_LIMIT_TOKEN_PER_CLIENT: '0', TOKEN_MONTHLY_QUOTA: '0', MAX_AGENTS_PER_OWNER: '0' }
})

type Schema = Record<string, any>
interface Parameter { name: string, in: 'path' | 'query' | 'header', required?: boolean, schema: Schema }
interface Operation {
  key: string
  method: string
  path: string
  parameters: Parameter[]
  bodies: Array<{ type: string, schema: Schema }>
  bodyRequired: boolean
  responses: Record<string, { content?: Record<string, { schema?: Schema }> }>
  /** security requirement names (bearerAuth, clientSecretBasic); an empty list: none */
  security: string[]
}

/**
 * The document with every local `$ref` (#/components/…) replaced by what it points at: the
 * generators below walk schemas structurally, and Ajv compiles each schema on its own.
 */
function dereferenced (node: unknown, root: Schema, seen: string[] = []): any {
  if (Array.isArray(node)) return node.map((item) => dereferenced(item, root, seen))
  if (node === null || typeof node !== 'object') return node
  const { $ref, ...rest } = node as Schema
  if (typeof $ref === 'string' && $ref.startsWith('#/')) {
    if (seen.includes($ref)) throw new Error(`a cycle through ${$ref}`)
    const target = $ref.slice(2).split('/').reduce((at: Schema, part: string) => at[part.replace(/~1/g, '/').replace(/~0/g, '~')], root)
    return dereferenced({ ...target, ...rest }, root, [...seen, $ref])
  }
  return Object.fromEntries(Object.entries(node).map(([key, value]) => [key, dereferenced(value, root, seen)]))
}
const generated = (await app.inject({ method: 'GET', url: '/docs/json' })).json() as Schema
const document = dereferenced(generated, generated) as { paths: Record<string, Record<string, Schema>> }
const operations: Operation[] = Object.entries(document.paths).flatMap(([path, methods]) =>
  Object.entries(methods).map(([method, operation]) => ({
    key: `${method.toUpperCase()} ${path}`,
    method: method.toUpperCase(),
    path,
    parameters: (operation.parameters ?? []) as Parameter[],
    bodies: Object.entries((operation.requestBody?.content ?? {}) as Record<string, { schema: Schema }>).map(([type, entry]) => ({ type, schema: entry.schema })),
    bodyRequired: operation.requestBody?.required === true,
    responses: operation.responses ?? {},
    security: ((operation.security ?? []) as Array<Record<string, unknown>>).flatMap((requirement) => Object.keys(requirement))
  })))

// ---------------------------------------------------------------------------------------------
// The oracles: Ajv over the document's own schemas. Bodies are judged as sent (no coercion), the
// query and path as text coerced to the declared types ('array'), as lib/validation.ts does.

function ajv (coerceTypes: false | 'array'): Ajv {
  const instance = new Ajv({ strict: false, allErrors: false, useDefaults: true, coerceTypes, validateFormats: true })
  ajvFormats.default(instance)
  return instance
}
const asSent = ajv(false)
const asText = ajv('array')

const responseValidators = new Map<string, ValidateFunction>()
function responseValidator (operation: Operation, status: string): ValidateFunction | undefined {
  const key = `${operation.key} ${status}`
  if (!responseValidators.has(key)) {
    const content = operation.responses[status]?.content
    const schema = content === undefined ? undefined : Object.values(content)[0]?.schema
    if (schema !== undefined) responseValidators.set(key, asSent.compile(schema))
  }
  return responseValidators.get(key)
}

const requestValidators = new Map<string, ValidateFunction>()
function cached (key: string, make: () => ValidateFunction): ValidateFunction {
  if (!requestValidators.has(key)) requestValidators.set(key, make())
  return requestValidators.get(key) as ValidateFunction
}

function parametersSchema (operation: Operation, where: 'path' | 'query'): Schema {
  const parameters = operation.parameters.filter((parameter) => parameter.in === where)
  return {
    type: 'object',
    properties: Object.fromEntries(parameters.map((parameter) => [parameter.name, parameter.schema])),
    // a parameter with a default is filled in by the server (useDefaults), whatever `required` says
    required: parameters.filter((parameter) => parameter.required === true && parameter.schema.default === undefined).map((parameter) => parameter.name)
  }
}

/** What the server's parsers make of a form body or a query string: a repeated name becomes an array. */
function fromPairs (pairs: Iterable<[string, string]>): Record<string, unknown> {
  const result: Record<string, unknown> = Object.create(null)
  for (const [name, value] of pairs) {
    const before = result[name]
    result[name] = before === undefined ? value : Array.isArray(before) ? [...before, value] : [before, value]
  }
  return { ...result }
}

// ---------------------------------------------------------------------------------------------
// The fuzzer's requests

interface Body { type: string, entries?: Array<[string, unknown]>, raw?: string | Buffer }
interface Parts {
  path: Record<string, string>
  query: Array<[string, string]>
  body?: Body
  headers: Record<string, string>
}
interface FuzzRequest {
  operation: Operation | undefined
  kind: 'valid' | 'invalid' | 'hostile'
  what: string
  method: string
  url: string
  headers: Record<string, string>
  payload?: string | Buffer
  /** the request breaks its declared schema: the answer must be a 4xx */
  mustRefuse: boolean
  /** extra expectations of a fixed case */
  expect?: (res: LightMyRequestResponse) => string | undefined
}

function jsonText (entries: Array<[string, unknown]>): string {
  // written by hand so that a key may repeat and "__proto__" stays an ordinary member
  return `{${entries.map(([name, value]) => `${JSON.stringify(name)}:${JSON.stringify(value)}`).join(',')}}`
}

function formText (entries: Array<[string, unknown]>): string {
  const form = new URLSearchParams()
  for (const [name, value] of entries) {
    for (const item of Array.isArray(value) ? value : [value]) form.append(name, typeof item === 'string' ? item : JSON.stringify(item))
  }
  return form.toString()
}

function encodeBody (body: Body): { payload: string | Buffer, contentType: string } {
  if (body.raw !== undefined) return { payload: body.raw, contentType: body.type }
  const entries = body.entries ?? []
  return { payload: body.type.includes('json') ? jsonText(entries) : formText(entries), contentType: body.type }
}

/** Whether the server's validators would accept these parts (undefined: no judgement). */
function schemaValid (operation: Operation, parts: Parts, payload: string | Buffer | undefined): boolean {
  const path = cached(`${operation.key} path`, () => asText.compile(parametersSchema(operation, 'path')))
  if (!path({ ...parts.path })) return false
  const query = cached(`${operation.key} query`, () => asText.compile(parametersSchema(operation, 'query')))
  if (!query(fromPairs(parts.query))) return false
  const body = parts.body
  if (body === undefined || payload === undefined) return true
  // a media type is its essence: parameters (charset=…) do not make it another type
  const essence = body.type.split(';')[0].trim().toLowerCase()
  const declared = operation.bodies.find((entry) => entry.type === essence)
  if (declared === undefined) return false
  let parsed: unknown
  if (essence.endsWith('json')) {
    try {
      // RFC 8259 §8.1 lets a parser ignore a byte order mark, and Fastify's does
      parsed = JSON.parse((typeof payload === 'string' ? payload : payload.toString('utf8')).replace(/^\ufeff/, ''))
    } catch {
      return false
    }
  } else {
    // RFC 6749 §3.2, as the OAuth endpoints parse forms: a parameter without a value is omitted
    const pairs = [...new URLSearchParams(typeof payload === 'string' ? payload : payload.toString('utf8'))]
    parsed = fromPairs(isOAuth(operation) ? pairs.filter(([, value]) => value !== '') : pairs)
  }
  return cached(`${operation.key} body ${body.type}`, () => asSent.compile(declared.schema))(parsed)
}

/**
 * encodeURIComponent, except that a lone surrogate (which it refuses) is sent as the bytes of its
 * generalized UTF-8 spelling (\ud800 → %ED%A0%80): what a client that does not check would send.
 */
function encodePart (text: string): string {
  return text.replace(/[\s\S]/gu, (char) => {
    if (char.isWellFormed()) return encodeURIComponent(char)
    const code = char.charCodeAt(0)
    return [0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f)].map((byte) => `%${byte.toString(16).toUpperCase()}`).join('')
  })
}

function assemble (operation: Operation, kind: FuzzRequest['kind'], what: string, parts: Parts, judge = true): FuzzRequest {
  let url = operation.path.replace(/\{(\w+)\}/g, (_, name: string) => encodePart(parts.path[name] ?? ''))
  if (parts.query.length > 0) url += '?' + parts.query.map(([name, value]) => `${encodePart(name)}=${encodePart(value)}`).join('&')
  const headers = { ...parts.headers }
  let payload: string | Buffer | undefined
  if (parts.body !== undefined) {
    const encoded = encodeBody(parts.body)
    payload = encoded.payload
    headers['content-type'] = encoded.contentType
  }
  return { operation, kind, what, method: operation.method, url, headers, payload, mustRefuse: judge && !schemaValid(operation, parts, payload) }
}

// ---------------------------------------------------------------------------------------------
// Known things: an admin with a real secret, victims with agents, credentials, tokens and events,
// so that generated requests reach past "not found".

const admin = await bootstrap(app.databaseUrl)
async function tokenOf (client: Client): Promise<string> {
  const res = await app.inject({
    method: 'POST', url: '/api/v1/token',
    headers: { authorization: basic(client.clientId, client.clientSecret), 'content-type': 'application/x-www-form-urlencoded' },
    payload: 'grant_type=client_credentials'
  })
  if (res.statusCode !== 200) throw new Error(`no token for ${client.clientId}: ${res.statusCode} ${res.body}`)
  return res.json<{ access_token: string }>().access_token
}
const adminToken = await tokenOf(admin)
const adminBearer = `Bearer ${adminToken}`

type Victim = Client & { credentialId: string, token: string }
let registered = 0
/** Agents with a credential and a token, for generated requests to act on. */
async function newVictims (): Promise<Victim[]> {
  const made: Victim[] = []
  for (const capabilities of [['docs:read'], ['docs:read', 'docs:write', 'tokens:read'], ['files:read', 'agents:read']]) {
    registered += 1
    const created = await app.inject({
      method: 'POST', url: AGENTS, headers: { authorization: adminBearer },
      // the resource the generated token requests name is one of their audiences (RFC 8707): listed, it is granted
      payload: { email: `victim-${registered}-${SEED}@example.com`, agentType: 'custom', version: '1.0.0', capabilities, owner: 'fuzz', deploymentEnv: 'staging', audiences: ['https://api.example.com/orders'] }
    })
    if (created.statusCode !== 201) throw new Error(`victim refused: ${created.body}`)
    const agentId = created.json<{ agentId: string }>().agentId
    const credential = await app.inject({ method: 'POST', url: `${AGENTS}/${agentId}/credentials`, headers: { authorization: adminBearer } })
    const { credentialId, clientSecret } = credential.json<{ credentialId: string, clientSecret: string }>()
    const client = { clientId: agentId, clientSecret, credentialId }
    made.push({ ...client, token: await tokenOf(client) })
  }
  return made
}
// Each operation gets agents of its own (set before its requests are generated): a fuzzed DELETE
// would otherwise decommission what every later operation needs to get past 404 and 409.
let victims = await newVictims()
const hostileVictims = await newVictims()

let issuersMade = 0
/** Federation issuers for an operation on one (`{issuerId}`): a fuzzed DELETE removes them. */
async function newIssuers (): Promise<string[]> {
  const made: string[] = []
  for (let n = 0; n < 2; n += 1) {
    issuersMade += 1
    const created = await app.inject({
      method: 'POST', url: '/api/v1/federation/issuers', headers: { authorization: adminBearer },
      payload: { issuer: `https://issuer-${issuersMade}-${SEED}.fuzz.example`, discovery: true, audiences: [ISSUER], algorithms: ['RS256'], maxLifetimeSeconds: 600 }
    })
    if (created.statusCode !== 201) throw new Error(`issuer refused: ${created.body}`)
    made.push(created.json<{ issuerId: string }>().issuerId)
  }
  return made
}
let issuerIds: string[] = []
const eventIds = (await app.inject({ method: 'GET', url: '/api/v1/audit?limit=20', headers: { authorization: adminBearer } }))
  .json<{ data: Array<{ eventId: string }> }>().data.map((event) => event.eventId)

const CUSTOM_SCOPES = ['docs:read', 'docs:write', 'files:read', 'files:*', 'reports:export']

// ---------------------------------------------------------------------------------------------
// Arbitraries from JSON Schema, with realistic values for the names that carry meaning

const futureInstant = fc.integer({ min: 60, max: 365 * 86400 }).map((seconds) => new Date(Date.now() + seconds * 1000).toISOString())
const pastInstant = fc.integer({ min: -30 * 86400, max: 0 }).map((seconds) => new Date(Date.now() + seconds * 1000).toISOString())

const HINTS: Record<string, () => fc.Arbitrary<unknown>> = {
  grant_type: () => fc.constant('client_credentials'),
  scope: () => fc.subarray([...CUSTOM_SCOPES, ...PLATFORM_SCOPES], { minLength: 1, maxLength: 3 }).map((scopes) => scopes.join(' ')),
  resource: () => fc.constantFrom(ISSUER, 'https://api.example.com/orders'),
  token: () => fc.constantFrom(...victims.map((victim) => victim.token)),
  token_type_hint: () => fc.constantFrom('access_token', 'refresh_token'),
  email: () => fc.uuid().map((id) => `fuzz-${id.slice(0, 13)}@example.com`),
  capabilities: () => fc.uniqueArray(fc.constantFrom(...CUSTOM_SCOPES, 'agents:read', 'audit:read'), { minLength: 1, maxLength: 4 }),
  version: () => fc.constantFrom('1.0.0', '2.3.4-beta.1', '0.0.1+build.7'),
  owner: () => fc.constantFrom('fuzz', 'team-a', 'équipe ☃'),
  expiresAt: () => futureInstant,
  startDate: () => pastInstant,
  endDate: () => fc.constantFrom(new Date(Date.now() + 3600_000).toISOString()),
  agentId: () => fc.constantFrom(...victims.map((victim) => victim.clientId)),
  action: () => fc.constantFrom('token.issued', 'agent.created', 'auth.failed', 'credential.rotated')
}

function stringArbitrary (schema: Schema): fc.Arbitrary<string> {
  const min = schema.minLength ?? 0
  const max = schema.maxLength ?? Number.POSITIVE_INFINITY
  const fits = (value: string) => value.length >= min && value.length <= max
  if (schema.format === 'uuid') return fc.uuid()
  if (schema.format === 'date-time') return fc.oneof(futureInstant, pastInstant)
  if (schema.format === 'email') return fc.emailAddress().filter(fits)
  if (typeof schema.pattern === 'string') return fc.stringMatching(new RegExp(schema.pattern)).filter(fits)
  return fc.string({ minLength: min, maxLength: Math.min(max, Math.max(min, 40)) })
}

function fromSchema (schema: Schema, name?: string): fc.Arbitrary<unknown> {
  const hint = name === undefined ? undefined : HINTS[name]
  const plain = plainFromSchema(schema)
  return hint === undefined ? plain : fc.oneof({ weight: 4, arbitrary: hint() }, { weight: 1, arbitrary: plain })
}

function plainFromSchema (schema: Schema): fc.Arbitrary<unknown> {
  if (Array.isArray(schema.enum)) return fc.constantFrom(...schema.enum)
  if ('const' in schema) return fc.constant(schema.const)
  const union = schema.anyOf ?? schema.oneOf
  if (Array.isArray(union)) return fc.oneof(...union.map((member: Schema) => plainFromSchema(member)))
  if (Array.isArray(schema.type)) return fc.oneof(...schema.type.map((type: string) => plainFromSchema({ ...schema, type })))
  switch (schema.type) {
    case 'string': return stringArbitrary(schema)
    case 'integer': return fc.integer({ min: schema.minimum ?? -1_000_000, max: schema.maximum ?? 1_000_000 })
    case 'number': return fc.double({ min: schema.minimum ?? -1e6, max: schema.maximum ?? 1e6, noNaN: true, noDefaultInfinity: true })
    case 'boolean': return fc.boolean()
    case 'null': return fc.constant(null)
    case 'array': {
      const items = plainFromSchema(schema.items ?? {})
      const constraints = { minLength: schema.minItems ?? 0, maxLength: Math.min(schema.maxItems ?? 4, 4) }
      return schema.uniqueItems === true ? fc.uniqueArray(items, { ...constraints, selector: (item) => JSON.stringify(item) }) : fc.array(items, constraints)
    }
    case 'object': return objectEntries(schema).map((entries) => Object.fromEntries(entries))
    default: return fc.jsonValue({ maxDepth: 2 })
  }
}

/** An object as a list of members, so that mutations can drop, add, repeat or replace one. */
function objectEntries (schema: Schema, leaveOut: string[] = []): fc.Arbitrary<Array<[string, unknown]>> {
  const properties = Object.entries((schema.properties ?? {}) as Record<string, Schema>).filter(([name]) => !leaveOut.includes(name))
  const required = new Set<string>(schema.required ?? [])
  const members = properties.map(([name, property]) => required.has(name)
    ? fromSchema(property, name).map((value) => [[name, value]] as Array<[string, unknown]>)
    : fc.option(fromSchema(property, name), { nil: undefined, freq: 2 }).map((value) => value === undefined ? [] : [[name, value]] as Array<[string, unknown]>))
  const all = members.length === 0 ? fc.constant([] as Array<[string, unknown]>) : fc.tuple(...members).map((lists) => lists.flat())
  // an update needs at least one member (minProperties): leave it to the schema, but say something
  return schema.minProperties > 0 && properties.length > 0
    ? all.chain((entries) => entries.length > 0 ? fc.constant(entries) : fromSchema(properties[0][1], properties[0][0]).map((value) => [[properties[0][0], value]] as Array<[string, unknown]>))
    : all
}

/** A string the server must refuse wherever it is a bounded, patterned or formatted field. */
const hostileString = fc.oneof(
  fc.constantFrom('\u0000', 'a\u0000b', '\ud800', 'x\udfffy', '\u202e', '\u200b', '\ufeff', '\r\n', ' ', '', '%00', '../../etc/passwd',
    "' OR 1=1 --", '"; DROP TABLE agents; --', '${jndi:ldap://x}', '<script>alert(1)</script>', '{{7*7}}', '\\', 'null', 'NaN', '-0', '1e309'),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.integer({ min: 300, max: 20_000 }).map((length) => 'A'.repeat(length))
)

/** A value of another JSON type than `schema` declares. */
function otherType (schema: Schema): fc.Arbitrary<unknown> {
  const declared = Array.isArray(schema.type) ? schema.type : [schema.type ?? (schema.enum !== undefined ? 'string' : 'object')]
  return fc.oneof(
    fc.constantFrom(null, true, 0, -1, 1e308, 2 ** 53 + 1, 1.5, '', 'x', [], {}, [null], { $gt: '' }),
    fc.jsonValue({ maxDepth: 3 })
  ).filter((value) => !declared.includes(jsonType(value)) && !(declared.includes('number') && typeof value === 'number'))
}

function jsonType (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'array'
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number'
  return typeof value
}

// ---------------------------------------------------------------------------------------------
// Requests per operation

const needsBearer = (operation: Operation) => operation.security.includes('bearerAuth') && !operation.security.includes('clientSecretBasic')
const isOAuth = (operation: Operation) => operation.security.includes('clientSecretBasic')

interface Auth { headers: Record<string, string>, body: Array<[string, unknown]> }

/** Authorization a legitimate caller would send; for OAuth routes maybe client credentials in the body. */
function validAuth (operation: Operation): fc.Arbitrary<Auth> {
  const bearerOf = (token: string): Auth => ({ headers: { authorization: `Bearer ${token}` }, body: [] })
  if (needsBearer(operation)) {
    return fc.oneof(
      { weight: 5, arbitrary: fc.constant(bearerOf(adminToken)) },
      { weight: 1, arbitrary: fc.constantFrom(...victims).map((victim) => bearerOf(victim.token)) }
    )
  }
  if (isOAuth(operation)) {
    const byClient = fc.constantFrom<Client>(admin, ...victims).chain((client) => fc.constantFrom<Auth>(
      { headers: { authorization: basic(client.clientId, client.clientSecret) }, body: [] },
      { headers: {}, body: [['client_id', client.clientId], ['client_secret', client.clientSecret]] }))
    return operation.security.includes('bearerAuth') ? fc.oneof(byClient, fc.constant(bearerOf(adminToken))) : byClient
  }
  return fc.constant<Auth>({ headers: {}, body: [] })
}

// the client authenticates by its secret (validAuth); a client assertion (private_key_jwt) or the
// jwt-bearer grant's assertion is another method, which a generated string can't satisfy: a valid
// request leaves them out (test/routes/oauth/private-key-jwt.test.ts and federation.test.ts have
// them), a broken one may still carry them
const CLIENT_FIELDS = ['client_id', 'client_secret', 'client_assertion', 'client_assertion_type', 'assertion']
// The token endpoint's schema holds both grants' parameters; those of the token exchange are refused
// with client_credentials (README, "Delegation"), the grant every generated request uses. A valid
// request leaves them out (exchanges have their own tests: test/routes/oauth/token-exchange.test.ts);
// a broken one may still carry them, as an unknown or mistyped member would.
const EXCHANGE_FIELDS = ['subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'audience']
const leftOut = (operation: Operation) =>
  !isOAuth(operation) ? [] : operation.key === 'POST /api/v1/token' ? [...CLIENT_FIELDS, ...EXCHANGE_FIELDS] : CLIENT_FIELDS

function validPath (operation: Operation): fc.Arbitrary<Record<string, string>> {
  const names = operation.parameters.filter((parameter) => parameter.in === 'path').map((parameter) => parameter.name)
  if (names.length === 0) return fc.constant({})
  const known = fc.constantFrom(...victims).map((victim) => ({ agentId: victim.clientId, credentialId: victim.credentialId }))
  const eventId = eventIds.length > 0 ? fc.constantFrom(...eventIds) : fc.uuid()
  const issuerId = issuerIds.length > 0 ? fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...issuerIds) }, { weight: 1, arbitrary: fc.uuid() }) : fc.uuid()
  return fc.record({ known: fc.oneof({ weight: 4, arbitrary: known }, { weight: 1, arbitrary: fc.record({ agentId: fc.uuid(), credentialId: fc.uuid() }) }), eventId, issuerId })
    .map(({ known: pair, eventId: event, issuerId: issuer }) => Object.fromEntries(names.map((name) =>
      [name, name === 'eventId' ? event : name === 'issuerId' ? issuer : (pair as Record<string, string>)[name] ?? ''])))
}

function validQuery (operation: Operation): fc.Arbitrary<Array<[string, string]>> {
  const parameters = operation.parameters.filter((parameter) => parameter.in === 'query')
  if (parameters.length === 0) return fc.constant([])
  return fc.tuple(...parameters.map((parameter) => fc.option(fromSchema(parameter.schema, parameter.name), { nil: undefined, freq: 2 })
    .map((value) => value === undefined ? [] : [[parameter.name, String(value)]] as Array<[string, string]>)))
    .map((lists) => lists.flat())
}

function validParts (operation: Operation): fc.Arbitrary<Parts> {
  const body = operation.bodies.length === 0
    ? fc.constant(undefined)
    : fc.constantFrom(...operation.bodies).chain((declared) => objectEntries(declared.schema, leftOut(operation))
      .map((entries): Body => ({ type: declared.type, entries })))
  return fc.record({ path: validPath(operation), query: validQuery(operation), body, auth: validAuth(operation) })
    .map(({ path, query, body: generated, auth }) => ({
      path,
      query,
      headers: auth.headers,
      body: generated === undefined ? undefined : { ...generated, entries: [...(generated.entries ?? []), ...auth.body] }
    }))
}

const HOSTILE_AUTHORIZATION = [
  '', 'Bearer', 'Bearer ', 'Bearer  ', 'Bearer x', 'Bearer a.b.c', 'Bearer ..', 'Bearer eyJ.eyJ.', `Bearer ${'A'.repeat(9000)}`,
  'Basic', 'Basic Og==', 'Basic !!!', 'Basic ' + Buffer.from(':').toString('base64'), 'Basic ' + Buffer.from('x'.repeat(500) + ':y').toString('base64'),
  'Digest username="x"', 'bearer', 'Bearer \u00ff\u00fe', 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', 'Basic %00:%00'
]

/** One mutation of a valid request: the request is broken in exactly one place. */
function invalidRequest (operation: Operation): fc.Arbitrary<FuzzRequest> {
  const base = validParts(operation)
  const mutations: Array<fc.Arbitrary<FuzzRequest>> = []
  const withBody = (what: string, change: (entries: Array<[string, unknown]>, body: Body) => fc.Arbitrary<Body>) =>
    base.filter((parts) => parts.body !== undefined).chain((parts) =>
      change(parts.body?.entries ?? [], parts.body as Body).map((body) => assemble(operation, 'invalid', what, { ...parts, body })))

  if (operation.bodies.length > 0) {
    const schemaOf = (body: Body) => operation.bodies.find((entry) => entry.type === body.type)?.schema ?? {}
    mutations.push(withBody('a required member missing', (entries, body) => {
      const required: string[] = schemaOf(body).required ?? []
      return required.length === 0 ? fc.constant(body) : fc.constantFrom(...required).map((name) => ({ ...body, entries: entries.filter(([key]) => key !== name) }))
    }))
    mutations.push(withBody('an unknown member', (entries, body) =>
      fc.tuple(fc.oneof(fc.constantFrom('__proto__', 'constructor', 'prototype', 'isAdmin', 'agentId', 'status', 'email', 'toString'), fc.string({ minLength: 1, maxLength: 12 })), fc.jsonValue({ maxDepth: 2 }))
        .filter(([name]) => !(name in (schemaOf(body).properties ?? {})))
        .map(([name, value]) => ({ ...body, entries: [...entries, [name, value]] as Array<[string, unknown]> }))))
    mutations.push(withBody('a member of the wrong type', (entries, body) => {
      const properties = Object.entries((schemaOf(body).properties ?? {}) as Record<string, Schema>)
      if (properties.length === 0) return fc.constant(body)
      return fc.constantFrom(...properties).chain(([name, property]) => otherType(property)
        .map((value) => ({ ...body, entries: [...entries.filter(([key]) => key !== name), [name, value]] as Array<[string, unknown]> })))
    }))
    mutations.push(withBody('a member crossing its constraints', (entries, body) => {
      const properties = Object.entries((schemaOf(body).properties ?? {}) as Record<string, Schema>)
      if (properties.length === 0) return fc.constant(body)
      return fc.tuple(fc.constantFrom(...properties), hostileString).map(([[name], value]) =>
        ({ ...body, entries: [...entries.filter(([key]) => key !== name), [name, value]] as Array<[string, unknown]> }))
    }))
    mutations.push(withBody('a repeated member', (entries, body) =>
      entries.length === 0 ? fc.constant(body) : fc.constantFrom(...entries).map((entry) => ({ ...body, entries: [...entries, entry] }))))
    mutations.push(withBody('a body that is no object', (_entries, body) => fc.oneof(
      fc.jsonValue({ maxDepth: 3 }).filter((value) => jsonType(value) !== 'object').map((value) => ({ type: body.type, raw: JSON.stringify(value) })),
      fc.constantFrom('', '{', '{"a":', 'nul', '{"a":1}}', '[1,]', '\u0000', '\ufeff{}', 'a=1&&&=', '%', '%zz=1', '=', '&').map((raw) => ({ type: body.type, raw }))
    )))
    mutations.push(withBody('another content type', (entries, body) =>
      fc.constantFrom('text/plain', 'application/xml', 'multipart/form-data; boundary=x', 'application/json; charset=latin1', 'application/x-www-form-urlencoded; charset=utf-16', 'application/jsonx', 'application/*')
        .filter((type) => !operation.bodies.some((declared) => declared.type === type))
        .map((type) => ({ type, raw: body.type.includes('json') ? jsonText(entries) : formText(entries) }))))
  }
  const pathNames = operation.parameters.filter((parameter) => parameter.in === 'path').map((parameter) => parameter.name)
  if (pathNames.length > 0) {
    mutations.push(base.chain((parts) => fc.tuple(fc.constantFrom(...pathNames),
      fc.oneof(hostileString.filter((value) => value !== ''), fc.uuid().map((id) => id.toUpperCase()), fc.uuid().map((id) => `${id}x`), fc.uuid().map((id) => id.replace(/-/g, ''))))
      .map(([name, value]) => assemble(operation, 'invalid', 'a bad path parameter', { ...parts, path: { ...parts.path, [name]: value } }))))
  }
  const queryParameters = operation.parameters.filter((parameter) => parameter.in === 'query')
  if (queryParameters.length > 0) {
    mutations.push(base.chain((parts) => fc.tuple(fc.constantFrom(...queryParameters),
      fc.oneof(hostileString, fc.constantFrom('0', '-1', '101', '201', '1e309', '99999999999999999999', '1.5', '0x10', ' 5', '5 ', 'true', '[]', '', '%')))
      .map(([parameter, value]) => assemble(operation, 'invalid', `a bad query parameter (${parameter.name})`,
        { ...parts, query: [...parts.query.filter(([name]) => name !== parameter.name), [parameter.name, value]] }))))
    mutations.push(base.chain((parts) => fc.constantFrom(...queryParameters).chain((parameter) => fromSchema(parameter.schema, parameter.name)
      .map((value) => assemble(operation, 'invalid', `a repeated query parameter (${parameter.name})`,
        { ...parts, query: [...parts.query, [parameter.name, String(value)], [parameter.name, String(value)]] })))))
  }
  mutations.push(base.chain((parts) => fc.tuple(fc.oneof(fc.constantFrom('__proto__', 'constructor', 'access_token', 'client_secret'), fc.string({ minLength: 1, maxLength: 10 })), fc.string({ maxLength: 20 }))
    .filter(([name]) => !queryParameters.some((parameter) => parameter.name === name))
    .map(([name, value]) => assemble(operation, 'invalid', 'an unknown query parameter', { ...parts, query: [...parts.query, [name, value]] }))))
  if (operation.security.length > 0) {
    mutations.push(base.chain((parts) => fc.constantFrom(...HOSTILE_AUTHORIZATION).map((authorization) =>
      assemble(operation, 'invalid', 'a bad Authorization header', { ...parts, headers: { ...parts.headers, authorization } }))))
    mutations.push(base.map((parts) => {
      const headers = { ...parts.headers }
      delete headers.authorization
      return assemble(operation, 'invalid', 'no Authorization header', { ...parts, headers, body: parts.body === undefined ? undefined : { ...parts.body, entries: parts.body.entries?.filter(([name]) => !CLIENT_FIELDS.includes(name)) } })
    }))
  }
  if (operation.bodyRequired) {
    mutations.push(base.map((parts) => ({ ...assemble(operation, 'invalid', 'no body at all', { ...parts, body: undefined }), mustRefuse: false })))
  }
  return fc.oneof(...mutations)
}

// ---------------------------------------------------------------------------------------------
// Fixed hostile cases

const byKey = new Map(operations.map((operation) => [operation.key, operation]))
function op (key: string): Operation {
  const found = byKey.get(key)
  if (found === undefined) throw new Error(`the document has no ${key}`)
  return found
}

const hostile: FuzzRequest[] = []
function fixed (key: string | undefined, what: string, request: { method?: string, url: string, headers?: Record<string, string>, payload?: string | Buffer }, expect?: FuzzRequest['expect']): void {
  const operation = key === undefined ? undefined : op(key)
  hostile.push({ operation, kind: 'hostile', what, method: request.method ?? operation?.method ?? 'GET', url: request.url, headers: request.headers ?? {}, payload: request.payload, mustRefuse: false, expect })
}
const status = (...allowed: number[]) => (res: LightMyRequestResponse) => allowed.includes(res.statusCode) ? undefined : `expected ${allowed.join(' or ')}, got ${res.statusCode}`
const oauthError = (statusCode: number, error: string) => (res: LightMyRequestResponse) =>
  res.statusCode === statusCode && res.json<{ error?: string }>().error === error ? undefined : `expected ${statusCode} ${error}, got ${res.statusCode} ${res.body}`
const refused = (res: LightMyRequestResponse) => res.statusCode >= 400 && res.statusCode < 500 ? undefined : `expected a 4xx, got ${res.statusCode}`

const JSON_TYPE = { 'content-type': 'application/json' }
const FORM_TYPE = { 'content-type': 'application/x-www-form-urlencoded' }
const asAdmin = { authorization: adminBearer }
const victim = hostileVictims[0]
const agentBodyText = (extra: string) => `{"email":"h-${SEED}-${hostile.length}@example.com","agentType":"custom","version":"1.0.0","capabilities":["docs:read"],"owner":"fuzz","deploymentEnv":"staging"${extra}}`

// lone surrogates: escaped in JSON, raw (CESU-8 bytes, invalid UTF-8), percent-encoded in forms, queries and paths
fixed('POST /api/v1/agents', 'lone surrogate, escaped in JSON', { url: AGENTS, headers: { ...asAdmin, ...JSON_TYPE }, payload: agentBodyText(',"owner":"x\\ud800"').replace('"owner":"fuzz",', '') }, refused)
const [ownerBefore, ownerAfter] = agentBodyText('').split('"owner":"fuzz"')
fixed('POST /api/v1/agents', 'lone surrogate, raw bytes in JSON (CESU-8, not UTF-8)', {
  url: AGENTS, headers: { ...asAdmin, ...JSON_TYPE }, payload: Buffer.concat([Buffer.from(`${ownerBefore}"owner":"x`), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from(`"${ownerAfter}`)])
}, refused)
fixed('POST /api/v1/token', 'raw bytes that are not UTF-8 in a form body', { url: '/api/v1/token', headers: FORM_TYPE, payload: Buffer.concat([Buffer.from(`grant_type=client_credentials&client_id=${admin.clientId}&client_secret=${encodeURIComponent(admin.clientSecret)}&resource=https://rs.example/`), Buffer.from([0xe9])]) }, oauthError(400, 'invalid_request'))
fixed('PATCH /api/v1/agents/{agentId}', 'lone low surrogate in an update', { url: `${AGENTS}/${victim.clientId}`, headers: { ...asAdmin, ...JSON_TYPE }, payload: '{"owner":"\\udfff"}' }, refused)
fixed('POST /api/v1/token', 'lone surrogate, percent-encoded in a form', { url: '/api/v1/token', headers: FORM_TYPE, payload: `grant_type=client_credentials&client_id=${admin.clientId}&client_secret=${encodeURIComponent(admin.clientSecret)}&scope=%ED%A0%80` }, refused)
fixed('POST /api/v1/token', 'lone surrogate in a JSON secret', { url: '/api/v1/token', headers: JSON_TYPE, payload: `{"grant_type":"client_credentials","client_id":"${admin.clientId}","client_secret":"sk_live_\\ud800"}` }, refused)
fixed('POST /api/v1/token/introspect', 'lone surrogate as the token', { url: '/api/v1/token/introspect', headers: { ...asAdmin, ...JSON_TYPE }, payload: '{"token":"\\ud800"}' })
fixed('GET /api/v1/agents', 'lone surrogate in a query', { url: `${AGENTS}?owner=%ED%A0%80` }, refused)
// percent-encoded bytes that are not UTF-8 stay the literal text `%ED%A0%80` (well-formed): a filter that matches nothing
fixed('GET /api/v1/agents', 'lone surrogate in a query (admin)', { url: `${AGENTS}?owner=%ED%A0%80`, headers: asAdmin })
fixed('GET /api/v1/agents/{agentId}', 'lone surrogate in a path', { url: `${AGENTS}/%ED%A0%80`, headers: asAdmin }, refused)
// NUL bytes
fixed('POST /api/v1/agents', 'NUL in a JSON member', { url: AGENTS, headers: { ...asAdmin, ...JSON_TYPE }, payload: agentBodyText('').replace('"owner":"fuzz"', '"owner":"a\\u0000b"') }, refused)
fixed('POST /api/v1/agents', 'NUL in a JSON name', { url: AGENTS, headers: { ...asAdmin, ...JSON_TYPE }, payload: agentBodyText(',"\\u0000":1') }, refused)
fixed('POST /api/v1/token', 'NUL in a form value', { url: '/api/v1/token', headers: FORM_TYPE, payload: `grant_type=client_credentials&client_id=%00${admin.clientId}&client_secret=x` }, refused)
fixed('POST /api/v1/token', 'raw NUL in a form body', { url: '/api/v1/token', headers: FORM_TYPE, payload: 'grant_type=client_credentials\u0000&scope=a' }, refused)
fixed('GET /api/v1/audit', 'NUL in a query', { url: '/api/v1/audit?action=token.issued%00', headers: asAdmin }, refused)
fixed('GET /api/v1/agents/{agentId}', 'NUL in a path', { url: `${AGENTS}/%00`, headers: asAdmin }, refused)
fixed('DELETE /api/v1/agents/{agentId}/credentials/{credentialId}', 'NUL in the second path parameter', { url: `${AGENTS}/${victim.clientId}/credentials/${victim.credentialId}%00`, headers: asAdmin }, refused)
// huge and odd numbers
for (const limit of ['1e309', '99999999999999999999999', '-0', '0x10', '1.5', '%20%205', 'Infinity', 'NaN', '9007199254740993', '-9223372036854775809']) {
  fixed('GET /api/v1/agents', `limit=${limit}`, { url: `${AGENTS}?limit=${limit}`, headers: asAdmin })
  fixed('GET /api/v1/audit', `limit=${limit}`, { url: `/api/v1/audit?limit=${limit}`, headers: asAdmin })
}
fixed('POST /api/v1/agents', 'a number beyond double range', { url: AGENTS, headers: { ...asAdmin, ...JSON_TYPE }, payload: agentBodyText('').replace('"version":"1.0.0"', '"version":1e999') }, refused)
fixed('POST /api/v1/agents/{agentId}/credentials', 'expiresAt as a huge number', { url: `${AGENTS}/${victim.clientId}/credentials`, headers: { ...asAdmin, ...JSON_TYPE }, payload: '{"expiresAt":1e400}' }, refused)
fixed('POST /api/v1/agents', 'a 400-digit integer', { url: AGENTS, headers: { ...asAdmin, ...JSON_TYPE }, payload: agentBodyText(`,"capabilities":[${'9'.repeat(400)}]`) }, refused)
// deep nesting, under the 64 KiB body limit
const deepArray = '['.repeat(20_000) + ']'.repeat(20_000)
const deepObject = '{"a":'.repeat(8_000) + '1' + '}'.repeat(8_000)
fixed('POST /api/v1/agents', 'an array nested 20,000 deep', { url: AGENTS, headers: { ...asAdmin, ...JSON_TYPE }, payload: deepArray }, refused)
fixed('POST /api/v1/agents', 'an object nested 8,000 deep as a member', { url: AGENTS, headers: { ...asAdmin, ...JSON_TYPE }, payload: agentBodyText(`,"x":${deepObject}`) }, refused)
fixed('PATCH /api/v1/agents/{agentId}', 'a nested member', { url: `${AGENTS}/${victim.clientId}`, headers: { ...asAdmin, ...JSON_TYPE }, payload: `{"capabilities":${deepArray}}` }, refused)
fixed('POST /api/v1/token', 'deep JSON on the token endpoint', { url: '/api/v1/token', headers: JSON_TYPE, payload: `{"grant_type":${deepArray}}` }, oauthError(400, 'invalid_request'))
fixed('POST /api/v1/token/introspect', 'deep JSON on introspection', { url: '/api/v1/token/introspect', headers: { ...asAdmin, ...JSON_TYPE }, payload: `{"token":${deepObject}}` }, refused)
fixed('POST /api/v1/token', 'a form of 5,000 pairs', { url: '/api/v1/token', headers: FORM_TYPE, payload: Array.from({ length: 5000 }, (_, index) => `p${index}=1`).join('&') }, refused)
// prototype keys
for (const [name, value] of [['__proto__', '{"isAdmin":true,"capabilities":["agents:write"]}'], ['constructor', '{"prototype":{"isAdmin":true}}'], ['prototype', '{"isAdmin":true}']]) {
  fixed('POST /api/v1/agents', `${name} in an agent`, { url: AGENTS, headers: { ...asAdmin, ...JSON_TYPE }, payload: agentBodyText(`,"${name}":${value}`) }, refused)
  fixed('PATCH /api/v1/agents/{agentId}', `${name} in an update`, { url: `${AGENTS}/${victim.clientId}`, headers: { ...asAdmin, ...JSON_TYPE }, payload: `{"${name}":${value},"version":"1.0.1"}` }, refused)
  fixed('POST /api/v1/token', `${name} on the token endpoint`, { url: '/api/v1/token', headers: { authorization: basic(victim.clientId, victim.clientSecret), ...JSON_TYPE }, payload: `{"grant_type":"client_credentials","${name}":${value}}` }, oauthError(400, 'invalid_request'))
  fixed('POST /api/v1/token/introspect', `${name} on introspection`, { url: '/api/v1/token/introspect', headers: { ...asAdmin, ...JSON_TYPE }, payload: `{"token":"${victim.token}","${name}":${value}}` }, refused)
  fixed('POST /api/v1/agents/{agentId}/credentials', `${name} in a credential`, { url: `${AGENTS}/${victim.clientId}/credentials`, headers: { ...asAdmin, ...JSON_TYPE }, payload: `{"${name}":${value}}` }, refused)
  fixed('POST /api/v1/token', `${name} in a form`, { url: '/api/v1/token', headers: { authorization: basic(victim.clientId, victim.clientSecret), ...FORM_TYPE }, payload: `grant_type=client_credentials&${name}=1&${name}[isAdmin]=1` }, oauthError(400, 'invalid_request'))
  fixed('GET /api/v1/agents', `${name} in a query`, { url: `${AGENTS}?${name}=1&${name}[limit]=5`, headers: asAdmin }, refused)
}
// duplicate members on the OAuth routes: invalid_request, as a repeated form parameter is
fixed('POST /api/v1/token', 'grant_type twice in JSON', { url: '/api/v1/token', headers: { authorization: basic(victim.clientId, victim.clientSecret), ...JSON_TYPE }, payload: '{"grant_type":"client_credentials","grant_type":"client_credentials"}' }, oauthError(400, 'invalid_request'))
fixed('POST /api/v1/token', 'client_id twice in JSON', { url: '/api/v1/token', headers: JSON_TYPE, payload: `{"grant_type":"client_credentials","client_id":"${victim.clientId}","client_id":"${admin.clientId}","client_secret":"${victim.clientSecret}"}` }, oauthError(400, 'invalid_request'))
fixed('POST /api/v1/token', 'scope twice in JSON, the second wider', { url: '/api/v1/token', headers: { authorization: basic(victim.clientId, victim.clientSecret), ...JSON_TYPE }, payload: '{"grant_type":"client_credentials","scope":"docs:read","scope":"agents:write"}' }, oauthError(400, 'invalid_request'))
fixed('POST /api/v1/token', 'grant_type twice in a form', { url: '/api/v1/token', headers: { authorization: basic(victim.clientId, victim.clientSecret), ...FORM_TYPE }, payload: 'grant_type=client_credentials&grant_type=client_credentials' }, oauthError(400, 'invalid_request'))
fixed('POST /api/v1/token/introspect', 'token twice in JSON', { url: '/api/v1/token/introspect', headers: { ...asAdmin, ...JSON_TYPE }, payload: `{"token":"${victim.token}","token":"x"}` }, oauthError(400, 'invalid_request'))
fixed('POST /api/v1/token/revoke', 'token twice in JSON', { url: '/api/v1/token/revoke', headers: { ...asAdmin, ...JSON_TYPE }, payload: `{"token":"x","token":"${victim.token}"}` }, oauthError(400, 'invalid_request'))
fixed('POST /api/v1/token/revoke', 'a nested duplicate is still a duplicate of nothing top-level', { url: '/api/v1/token/revoke', headers: { ...asAdmin, ...JSON_TYPE }, payload: '{"token":{"a":1,"a":2}}' }, oauthError(400, 'invalid_request'))
// X-Forwarded-For that is no address, from a trusted proxy: on a failed client authentication
// (audited with the address) and on a management call
for (const forwarded of ['not-an-ip', 'unknown', '1.2.3.4, garbage', 'garbage, 1.2.3.4', '::1%eth0', 'fe80::1%25lo', '999.999.999.999', '<script>', '', ' , , ', 'a'.repeat(2000), '_hidden', '1.2.3.4:8080', '[::1]:80', '0x7f.1', '127.1', '::ffff:1.2.3.4', '1.2.3.4\u00a0']) {
  fixed('POST /api/v1/token', `X-Forwarded-For ${JSON.stringify(forwarded.slice(0, 20))} on a failed authentication`,
    { url: '/api/v1/token', headers: { authorization: basic(victim.clientId, 'sk_live_wrong'), 'x-forwarded-for': forwarded, ...FORM_TYPE }, payload: 'grant_type=client_credentials' }, oauthError(401, 'invalid_client'))
  fixed('GET /api/v1/agents/{agentId}', `X-Forwarded-For ${JSON.stringify(forwarded.slice(0, 20))} on a read`,
    { url: `${AGENTS}/${victim.clientId}`, headers: { ...asAdmin, 'x-forwarded-for': forwarded } }, status(200))
}
// odd instants: a leap second, an offset without minutes, offsets beyond ±15:59, impossible dates
const ODD_INSTANTS = ['2026-12-31T23:59:60Z', '2026-06-30T23:59:60+00:00', '2026-01-01T00:00:00+00', '2026-01-01T00:00:00+16:00', '2026-01-01T00:00:00-15:59',
  '2026-02-30T00:00:00Z', '2026-01-01T24:00:00Z', '0000-01-01T00:00:00Z', '+275760-09-13T00:00:00Z', '-000001-01-01T00:00:00Z', '2026-01-01T00:00:00.123456789Z',
  '2026-01-01t00:00:00z', '2026-01-01 00:00:00Z', '2026-01-01T00:00:00', '2026-01-01', '20260101T000000Z', '2099-12-31T23:59:60Z', '9999-12-31T23:59:59.999Z']
for (const instant of ODD_INSTANTS) {
  const query = encodeURIComponent(instant)
  fixed('GET /api/v1/audit', `startDate ${instant}`, { url: `/api/v1/audit?startDate=${query}`, headers: asAdmin })
  fixed('GET /api/v1/audit', `endDate ${instant}`, { url: `/api/v1/audit?startDate=2020-01-01T00:00:00Z&endDate=${query}`, headers: asAdmin })
  fixed('GET /api/v1/audit/verify', `verify from ${instant}`, { url: `/api/v1/audit/verify?startDate=${query}`, headers: asAdmin })
  // spread over three agents: each holds at most five active credentials
  fixed('POST /api/v1/agents/{agentId}/credentials', `expiresAt ${instant}`, { url: `${AGENTS}/${hostileVictims[ODD_INSTANTS.indexOf(instant) % 3].clientId}/credentials`, headers: { ...asAdmin, ...JSON_TYPE }, payload: JSON.stringify({ expiresAt: instant }) })
}
// base64url with padding (or base64's alphabet) in Bearer tokens: only the canonical spelling is a token
const [header, claims, signature] = adminToken.split('.')
const padded = (part: string) => part + '='.repeat((4 - (part.length % 4)) % 4 || 4)
for (const [what, token] of [
  ['padding on the signature', `${header}.${claims}.${padded(signature)}`],
  ['padding on the header', `${padded(header)}.${claims}.${signature}`],
  ['padding on the claims', `${header}.${padded(claims)}.${signature}`],
  ['padding on every part', `${padded(header)}.${padded(claims)}.${padded(signature)}`],
  ['base64 alphabet', adminToken.replace(/-/g, '+').replace(/_/g, '/')],
  ['a trailing dot', `${adminToken}.`],
  ['white space inside', `${header}. ${claims}.${signature}`]
] as Array<[string, string]>) {
  if (token === adminToken) continue // this token has no character the change would touch
  fixed('GET /api/v1/agents', `Bearer with ${what}`, { url: AGENTS, headers: { authorization: `Bearer ${token}` } }, status(401))
  fixed('POST /api/v1/token/introspect', `introspecting a token with ${what}`, { url: '/api/v1/token/introspect', headers: { ...asAdmin, ...JSON_TYPE }, payload: JSON.stringify({ token }) },
    (res) => res.statusCode === 200 && res.body === '{"active":false}' ? undefined : `expected exactly {"active":false}, got ${res.statusCode} ${res.body}`)
}
// no operation at all: unknown paths and methods, malformed percent-encoding, absurd lengths
for (const [method, url] of [['GET', '/api/v1/agents/%E0%A4%A'], ['GET', '/api/v1/%'], ['PUT', AGENTS], ['TRACE', '/health'], ['GET', `/api/v1/agents/${'a'.repeat(8000)}`],
  ['GET', '/api/v1/../../etc/passwd'], ['GET', '/api/v1/agents/..%2f..%2fhealth'], ['GET', '/%00'], ['DELETE', '/api/v1/agents']]) {
  hostile.push({ operation: undefined, kind: 'hostile', what: `${method} ${url.slice(0, 60)}`, method, url, headers: asAdmin, mustRefuse: false, expect: refused })
}
// the Swagger UI's static files: no way out of its folder
for (const url of ['/docs/static/..%2f..%2f..%2fpackage.json', '/docs/static/%2e%2e/%2e%2e/%2e%2e/package.json', '/docs/..%2f..%2fpackage.json', '/docs/static/....//....//package.json']) {
  hostile.push({
    operation: undefined, kind: 'hostile', what: `GET ${url}`, method: 'GET', url, headers: {}, mustRefuse: false,
    expect: (res) => /devDependencies|"dependencies"/.test(res.body) ? `served a file from outside the UI: ${res.statusCode}` : undefined
  })
}
// a CORS preflight without its headers: @fastify/cors answers it itself (400 text/plain), before any route
hostile.push({ operation: undefined, kind: 'hostile', what: 'OPTIONS without preflight headers', method: 'OPTIONS', url: AGENTS, headers: {}, mustRefuse: false, expect: status(204, 400) })

// ---------------------------------------------------------------------------------------------
// Running and judging

interface Finding { key: string, what: string, problem: string, request: string, response: string }
const findings: Finding[] = []
const statusCounts = new Map<string, Map<number, number>>()
let tried = 0
let serverErrors = 0
let leaks = 0

function describe (request: FuzzRequest): string {
  const payload = request.payload === undefined ? '' : ` ${String(typeof request.payload === 'string' ? request.payload : request.payload.toString('latin1')).slice(0, 300)}`
  return `${request.method} ${request.url.slice(0, 300)} ${JSON.stringify(request.headers).slice(0, 300)}${payload}`
}

function judge (request: FuzzRequest, res: LightMyRequestResponse): string[] {
  const problems: string[] = []
  const operation = request.operation
  const declared = operation?.responses ?? {}
  if (res.statusCode >= 500 && !(res.statusCode === 503 && '503' in declared)) {
    problems.push(`${res.statusCode} (a 5xx the operation does not document)`)
    serverErrors += 1
  }
  if (operation !== undefined && !(String(res.statusCode) in declared) && !('default' in declared)) {
    problems.push(`status ${res.statusCode} is not declared (declared: ${Object.keys(declared).join(', ')})`)
  }
  const contentType = String(res.headers['content-type'] ?? '')
  if (res.body !== '') {
    if (operation?.key === 'GET /metrics' && res.statusCode === 200) {
      if (!contentType.startsWith('text/plain')) problems.push(`content type ${contentType}`)
    } else if (!request.url.startsWith('/docs') && request.method !== 'OPTIONS' && !/^application\/(?:problem\+)?json/.test(contentType)) {
      problems.push(`a body of type ${JSON.stringify(contentType)}`)
    }
  }
  if (operation !== undefined && String(res.statusCode) in declared && /json/.test(contentType)) {
    const validate = responseValidator(operation, String(res.statusCode))
    if (validate !== undefined) {
      let body: unknown
      try {
        body = res.body === '' ? undefined : JSON.parse(res.body)
      } catch {
        problems.push('the body is not JSON')
      }
      if (body !== undefined && !validate(body)) problems.push(`the body does not match the declared schema: ${asSent.errorsText(validate.errors)}`)
    }
  }
  if (res.statusCode === 204 && res.body !== '') problems.push('a 204 with a body')
  const shown = internalsIn(`${res.body}\n${JSON.stringify(res.headers)}`, describe(request) + String(request.payload ?? ''))
  if (shown.length > 0) {
    problems.push(`internals in the response: ${shown.join('; ')}`)
    leaks += 1
  }
  if (request.mustRefuse && res.statusCode < 400) problems.push(`accepted (${res.statusCode}) a request its declared schema refuses`)
  const extra = request.expect?.(res)
  if (extra !== undefined) problems.push(extra)
  return problems
}

async function send (request: FuzzRequest): Promise<void> {
  const key = request.operation?.key ?? '(no operation)'
  const res = await app.inject({ method: request.method as 'GET', url: request.url, headers: request.headers, payload: request.payload })
  tried += 1
  const counts = statusCounts.get(key) ?? new Map<number, number>()
  counts.set(res.statusCode, (counts.get(res.statusCode) ?? 0) + 1)
  statusCounts.set(key, counts)
  for (const problem of judge(request, res)) {
    findings.push({ key, what: `${request.kind}: ${request.what}`, problem, request: describe(request), response: `${res.statusCode} ${res.body.slice(0, 300)}` })
  }
}

/** Findings grouped by operation and problem, a few examples each: readable, and enough to replay. */
function report (list: Finding[]): string[] {
  const groups = new Map<string, Finding[]>()
  for (const finding of list) {
    const group = `${finding.key} | ${finding.what} | ${finding.problem.replace(/\d{3}/, 'NNN').slice(0, 120)}`
    groups.set(group, [...(groups.get(group) ?? []), finding])
  }
  return [...groups.entries()].map(([group, members]) =>
    `${group} (${members.length}×)\n    e.g. ${members[0].request}\n    → ${members[0].response}\n    problem: ${members[0].problem}`)
}

const started = Date.now()
for (const [index, operation] of operations.entries()) {
  t.test(operation.key, async (t) => {
    victims = await newVictims()
    if (operation.key.includes('{issuerId}')) issuerIds = await newIssuers()
    const before = findings.length
    const valid = fc.sample(validParts(operation).map((parts) => assemble(operation, 'valid', 'generated from the schemas', parts)), { seed: SEED + index, numRuns: RUNS })
    const invalid = fc.sample(invalidRequest(operation), { seed: SEED + 1000 + index, numRuns: RUNS })
    for (const request of [...valid, ...invalid]) await send(request)
    const counts = [...(statusCounts.get(operation.key) ?? new Map()).entries()].sort(([a], [b]) => a - b)
    t.comment(`${operation.key}: ${valid.length + invalid.length} requests, statuses ${counts.map(([code, count]) => `${code}×${count}`).join(' ')}`)
    t.same(report(findings.slice(before)), [], `every answer of ${operation.key} is declared, well-formed and clean (seed ${SEED})`)
    t.ok(counts.some(([code]) => code >= 200 && code < 300), 'the generated requests reach a success (the fuzzing goes past validation)')
  })
}

t.test('fixed hostile cases', async (t) => {
  const before = findings.length
  for (const request of hostile) await send(request)
  t.comment(`${hostile.length} fixed hostile requests`)
  t.same(report(findings.slice(before)), [], 'every hostile request is answered as declared, without internals, and as each case expects')
  t.equal(Object.keys(Object.prototype).length, 0, 'Object.prototype gained nothing (the server runs in this process)')
  t.equal(({} as Record<string, unknown>).isAdmin, undefined, 'no prototype pollution')
})

t.test('the app is healthy afterwards and its audit chain still verifies', async (t) => {
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200)
  const verified = await app.inject({ method: 'GET', url: '/api/v1/audit/verify', headers: asAdmin })
  t.equal(verified.statusCode, 200)
  t.equal(verified.json<{ intact: boolean }>().intact, true, 'the hash chain over everything the fuzzing wrote is intact')
  const still = await app.inject({ method: 'GET', url: `${AGENTS}?limit=1`, headers: asAdmin })
  t.equal(still.statusCode, 200, 'the admin token still works')
})

t.teardown(() => {
  const seconds = (Date.now() - started) / 1000
  t.comment(`fuzz: ${tried} inputs in ${seconds.toFixed(1)} s, ${serverErrors} undocumented 5xx, ${leaks} responses with internals, ${findings.length} findings, seed ${SEED}`)
  recordFigures({
    part: 'fuzz',
    inputsTried: tried,
    serverErrors,
    leaks,
    verdicts: { contract: `${findings.length === 0 ? 'ok' : 'FAILED'}: ${findings.length} findings over ${operations.length} operations + ${hostile.length} fixed cases, seed ${SEED}` },
    findings: findings.length,
    seed: SEED,
    seconds: Math.round(seconds)
  })
})
