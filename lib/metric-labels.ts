/**
 * Label values for the Prometheus metrics. Every label must have a small, fixed set of values: each
 * new value is a new time series that Prometheus keeps for as long as the process lives, so anything
 * a caller controls (a URL, a method, a scope string) is mapped onto a bounded set here.
 */

/** The route label of every request that matched no route (404s, malformed paths). */
export const UNMATCHED_ROUTE = '__not_found__'

/** The label of a value outside the bounded set. */
export const OTHER = 'other'

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])

/** Node's parser accepts some 30 methods; those no route serves share one label. */
export function methodLabel (method: string): string {
  return METHODS.has(method) ? method : 'OTHER'
}

/** The route pattern (`/api/v1/agents/:agentId`), never the URL: a pattern set is finite, URLs are not. */
export function routeLabel (pattern: string | undefined, is404: boolean): string {
  return is404 || pattern === undefined || pattern === '' ? UNMATCHED_ROUTE : pattern
}

const SQL_VERBS = new Set([
  'select', 'insert', 'update', 'delete', 'with', 'begin', 'commit', 'rollback', 'savepoint', 'release',
  'set', 'show', 'lock', 'truncate', 'create', 'alter', 'drop', 'do', 'call', 'copy', 'listen', 'notify',
  'unlisten', 'values', 'explain', 'analyze', 'vacuum', 'prepare', 'execute', 'deallocate', 'discard', 'reset'
])
const STATEMENT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$/
// leading whitespace, parentheses and comments come before the verb
const FIRST_WORD = /^(?:\s+|\(|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*([A-Za-z]+)/

/**
 * The `operation` of a query: the name of a named statement (hot-path queries are named, and there
 * are a handful of them in the code), else the SQL verb, lower-case.
 */
export function sqlOperation (query: unknown): string {
  if (typeof query === 'object' && query !== null) {
    const { name, text } = query as { name?: unknown, text?: unknown }
    if (typeof name === 'string' && STATEMENT_NAME.test(name)) return name
    return sqlOperation(text)
  }
  const verb = typeof query === 'string' ? FIRST_WORD.exec(query)?.[1]?.toLowerCase() : undefined
  return verb !== undefined && SQL_VERBS.has(verb) ? verb : OTHER
}

const COMMAND = /^[a-z][a-z0-9_.|-]{0,31}$/

/** ioredis names commands in lower case (`get`, `evalsha`, `publish`); anything odd is `other`. */
export function redisCommand (name: unknown): string {
  const command = typeof name === 'string' ? name.toLowerCase() : ''
  return COMMAND.test(command) ? command : OTHER
}

/**
 * A label that takes the first `limit` distinct values it is given, then `other`: a cap for values
 * that are finite in practice but not by construction (scopes are whatever capabilities admins give).
 */
export function cappedLabel (limit: number): (value: string) => string {
  const seen = new Set<string>()
  return function capped (value) {
    if (seen.has(value)) return value
    if (seen.size >= limit) return OTHER
    seen.add(value)
    return value
  }
}
