/**
 * The API reference in Markdown (docs/api.md), rendered from the OpenAPI document the server
 * generates: `npm run docs:api` writes it with the document beside it (docs/openapi.json), and
 * test/docs/api-reference.test.ts fails when the committed files are not what the code generates.
 * Pure: a document in, text out.
 */

import { HEADER_NAMES } from './openapi.js'

type Json = Record<string, any>

const METHODS = ['get', 'post', 'put', 'patch', 'delete']
const SCHEMAS = '#/components/schemas/'

/** `|` would end a table cell; new lines would end the row. */
function cell (text: unknown): string {
  return String(text ?? '').replace(/\|/g, '\\|').replace(/\s*\n\s*/g, ' ')
}

function anchor (name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-')
}

/** A schema as a short type: a link for a named one, `a` \| `b` for an enum, T[] for an array. */
export function typeOf (schema: Json | undefined): string {
  if (schema === undefined) return ''
  if (typeof schema.$ref === 'string') {
    const name = schema.$ref.slice(SCHEMAS.length)
    return `[${name}](#${anchor(name)})`
  }
  if (Array.isArray(schema.allOf)) return schema.allOf.map((member: Json) => typeOf(member)).filter(Boolean).join(' & ')
  if (Array.isArray(schema.anyOf ?? schema.oneOf)) return (schema.anyOf ?? schema.oneOf).map((member: Json) => typeOf(member)).join(' \\| ')
  if (Array.isArray(schema.enum)) return schema.enum.map((value: unknown) => `\`${String(value)}\``).join(' \\| ')
  if ('const' in schema) return `\`${String(schema.const)}\``
  if (schema.type === 'array') return `${typeOf(schema.items) || 'any'}[]`
  if (Array.isArray(schema.type)) return schema.type.join(' \\| ')
  if (schema.type === undefined && schema.properties === undefined) return ''
  return `${schema.type ?? 'object'}${schema.format === undefined ? '' : ` (${schema.format as string})`}`
}

/** What a value may be beyond its type: lengths, bounds, a pattern, a default. */
function constraints (schema: Json): string {
  const parts: string[] = []
  if (schema.minLength !== undefined || schema.maxLength !== undefined) parts.push(`length ${schema.minLength ?? 0}–${schema.maxLength ?? '∞'}`)
  if (schema.minimum !== undefined || schema.maximum !== undefined) parts.push(`${schema.minimum ?? '−∞'}–${schema.maximum ?? '∞'}`)
  if (schema.minItems !== undefined || schema.maxItems !== undefined) parts.push(`${schema.minItems ?? 0}–${schema.maxItems ?? '∞'} items`)
  if (schema.default !== undefined) parts.push(`default ${JSON.stringify(schema.default)}`)
  if (schema.pattern !== undefined) parts.push(`pattern \`${schema.pattern as string}\``)
  return parts.join('; ')
}

function securityOf (operation: Json): string {
  const requirements = (operation.security ?? []) as Json[]
  if (requirements.length === 0) return 'none (public)'
  return requirements.map((requirement) => {
    const entries = Object.entries(requirement)
    if (entries.length === 0) return 'none (client_secret_post: credentials in the body)'
    return entries.map(([name, scopes]) => (scopes as string[]).length > 0 ? `${name} (${(scopes as string[]).join(', ')})` : name).join(' + ')
  }).join(' or ')
}

/** The codes a response lists (`code` of a problem, `error` of an OAuth error). */
function codesOf (media: Json | undefined): string {
  const narrowed = media?.schema?.allOf?.[1]?.properties
  const codes = narrowed?.code?.enum ?? narrowed?.error?.enum
  return Array.isArray(codes) ? codes.map((code: string) => `\`${code}\``).join(', ') : ''
}

function renderOperation (document: Json, path: string, method: string, operation: Json): string[] {
  const lines = [`### \`${method.toUpperCase()} ${path}\``, '', `${operation.summary ?? ''} (\`${operation.operationId as string}\`)`, '']
  if (operation.description !== undefined) lines.push(operation.description, '')
  lines.push(`Security: ${securityOf(operation)}.`, '')
  const parameters = (operation.parameters ?? []) as Json[]
  if (parameters.length > 0) {
    lines.push('| parameter | in | type | required | constraints | description |', '|---|---|---|---|---|---|')
    for (const parameter of parameters) {
      lines.push(`| \`${parameter.name as string}\` | ${parameter.in as string} | ${cell(typeOf(parameter.schema))} | ${parameter.required === true ? 'yes' : 'no'} | ${cell(constraints(parameter.schema ?? {}))} | ${cell(parameter.description)} |`)
    }
    lines.push('')
  }
  const body = operation.requestBody as Json | undefined
  if (body !== undefined) {
    const types = Object.keys(body.content ?? {})
    const first = body.content[types[0]]
    lines.push(`Request body (${body.required === true ? 'required' : 'optional'}): ${typeOf(first.schema)} as ${types.map((type) => `\`${type}\``).join(' or ')}`, '')
    if (first.example !== undefined) lines.push('```json', JSON.stringify(first.example, null, 2), '```', '')
  }
  lines.push('| status | description | body | codes |', '|---|---|---|---|')
  for (const [status, declared] of Object.entries(operation.responses ?? {}) as Array<[string, Json]>) {
    const response = typeof declared.$ref === 'string' ? document.components.responses[declared.$ref.split('/').pop() as string] : declared
    const media = Object.entries(response.content ?? {}) as Array<[string, Json]>
    const bodyText = media.map(([type, entry]) => `${typeOf(entry.schema.allOf?.[0] ?? entry.schema)} (\`${type}\`)`).join(', ')
    lines.push(`| ${status} | ${cell(response.description)} | ${cell(bodyText)} | ${cell(media.map(([, entry]) => codesOf(entry)).filter(Boolean).join('; '))} |`)
  }
  lines.push('')
  return lines
}

function renderSchema (name: string, schema: Json): string[] {
  const lines = [`### ${name}`, '']
  if (schema.description !== undefined) lines.push(schema.description, '')
  const properties = Object.entries(schema.properties ?? {}) as Array<[string, Json]>
  if (properties.length > 0) {
    const required = new Set<string>(schema.required ?? [])
    lines.push('| field | type | required | constraints | description |', '|---|---|---|---|---|')
    for (const [field, property] of properties) {
      lines.push(`| \`${field}\` | ${cell(typeOf(property))} | ${required.has(field) ? 'yes' : 'no'} | ${cell(constraints(property))} | ${cell(property.description)} |`)
    }
    lines.push('')
    if (schema.additionalProperties === false) lines.push('Other fields are refused.', '')
  }
  if (Array.isArray(schema.examples)) lines.push('Example:', '', '```json', JSON.stringify(schema.examples[0], null, 2), '```', '')
  return lines
}

export function renderApiReference (document: Json): string {
  const scheme = document.components.securitySchemes.oauth2
  const lines = [
    `# ${document.info.title as string} API reference (${document.info.version as string})`,
    '',
    '<!-- generated by `npm run docs:api` from the OpenAPI document; edit the route schemas, not this file -->',
    '',
    'Generated from the OpenAPI 3.1 document the server serves at `/docs/json` (Swagger UI at `/docs`); the same document is',
    '[openapi.json](openapi.json), for an ISSUER_URL of `http://localhost:3000`.',
    '',
    document.info.description,
    '',
    '## Authentication',
    '',
    `Management operations take an access token: \`Authorization: Bearer <access_token>\`, from \`POST /api/v1/token\` (OAuth 2.0 client credentials, token URL \`${scheme.flows.clientCredentials.tokenUrl as string}\`). Each operation lists the scope it requires.`,
    '',
    '| scope | grants |',
    '|---|---|',
    ...Object.entries(scheme.flows.clientCredentials.scopes as Record<string, string>).map(([scope, text]) => `| \`${scope}\` | ${cell(text)} |`),
    '',
    '## Response headers',
    '',
    '| header | description |',
    '|---|---|',
    ...Object.entries(document.components.headers as Record<string, Json>).map(([name, header]) => `| \`${HEADER_NAMES[name] ?? name}\` | ${cell(header.description)} |`),
    '',
  ]
  for (const tag of document.tags as Json[]) {
    lines.push(`## ${tag.name as string}: ${tag.description as string}`, '')
    for (const [path, item] of Object.entries(document.paths as Record<string, Json>)) {
      for (const method of METHODS) {
        const operation = item[method] as Json | undefined
        if (operation?.tags?.includes(tag.name) === true) lines.push(...renderOperation(document, path, method, operation))
      }
    }
  }
  lines.push('## Schemas', '')
  for (const [name, schema] of Object.entries(document.components.schemas as Record<string, Json>)) lines.push(...renderSchema(name, schema))
  return lines.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd() + '\n'
}
