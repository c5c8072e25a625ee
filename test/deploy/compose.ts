import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { projectRoot } from '../../lib/paths.js'

/** compose.yaml as the checks read it (only the fields they look at are typed). */
export interface ComposeService {
  image?: string
  build?: string | { context?: string, dockerfile?: string }
  command?: string | string[]
  environment?: Record<string, string | number | boolean | null> | string[]
  depends_on?: string[] | Record<string, { condition?: string }>
  healthcheck?: { test?: string | string[], interval?: string, timeout?: string, retries?: number, disable?: boolean }
  restart?: string
  volumes?: Array<string | { type?: string, source?: string, target?: string }>
  deploy?: { resources?: { limits?: { cpus?: string | number, memory?: string } } }
  ports?: Array<string | number | Record<string, unknown>>
  [key: string]: unknown
}

export interface ComposeFile {
  name?: string
  services: Record<string, ComposeService>
  volumes?: Record<string, unknown>
  [key: string]: unknown
}

export function readCompose (): ComposeFile {
  return parse(readFileSync(join(projectRoot, 'compose.yaml'), 'utf8')) as ComposeFile
}

/**
 * Compose's variable interpolation: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
 * `${VAR:?error}`, `${VAR?error}`. A missing required variable throws with compose's message.
 */
export function interpolate (value: string, env: Record<string, string | undefined>): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (all: string, name: string | undefined, operator: string | undefined, argument: string | undefined, bare: string | undefined) => {
      if (all === '$$') return '$'
      const key = (name ?? bare) as string
      const current = env[key]
      if (operator === undefined) return current ?? ''
      const missing = operator.startsWith(':') ? current === undefined || current === '' : current === undefined
      if (operator.endsWith('-')) return missing ? (argument ?? '') : current as string
      if (missing) throw new Error(`required variable ${key} is missing a value: ${argument ?? ''}`)
      return current as string
    })
}

/** Every string in a value, interpolated (objects and arrays walked). */
export function interpolateDeep<T> (value: T, env: Record<string, string | undefined>): T {
  if (typeof value === 'string') return interpolate(value, env) as T
  if (Array.isArray(value)) return value.map((item) => interpolateDeep(item, env)) as T
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, interpolateDeep(item, env)])) as T
  }
  return value
}

/** A service's environment as a map of strings. */
export function environmentOf (service: ComposeService): Record<string, string> {
  const environment = service.environment ?? {}
  if (Array.isArray(environment)) {
    return Object.fromEntries(environment.map((entry) => {
      const at = entry.indexOf('=')
      return at === -1 ? [entry, ''] : [entry.slice(0, at), entry.slice(at + 1)]
    }))
  }
  return Object.fromEntries(Object.entries(environment).map(([key, value]) => [key, value === null ? '' : String(value)]))
}

/** The service's command as an argument list. */
export function commandOf (service: ComposeService): string[] {
  const command = service.command ?? []
  return Array.isArray(command) ? command : command.split(/\s+/).filter(Boolean)
}
