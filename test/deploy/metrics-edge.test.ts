import { join } from 'node:path'
import t from 'tap'
import { projectRoot } from '../../lib/paths.js'
import { build } from '../helper.js'
import { loadTree, resources } from './hcl.js'

/**
 * /metrics from the internet: every spelling of a path that the application routes to its metrics
 * endpoint must be refused by both load balancers' rules as Terraform writes them, and, behind
 * them, answer 401 without the METRICS_TOKEN. The candidates include percent-escaped spellings,
 * because the application decodes escapes before routing.
 */

const tree = await loadTree(join(projectRoot, 'terraform'))

/** ALB path patterns: "*" any run of characters, "?" exactly one, case-sensitive, whole path. */
function albPattern (pattern: string): RegExp {
  const body = [...pattern].map((char) => char === '*' ? '.*' : char === '?' ? '.' : char.replace(/[.+^${}()|[\]\\]/g, '\\$&')).join('')
  return new RegExp(`^${body}$`)
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
const blocks = (value: Json | undefined): Array<Record<string, Json>> =>
  (value === undefined || value === null ? [] : Array.isArray(value) ? value : [value]).filter((item): item is Record<string, Json> => item !== null && typeof item === 'object' && !Array.isArray(item))

/** Paths the ALB answers itself with an error: the fixed-response listener rules of modules/lb/aws. */
function refusedByAlb (path: string): boolean {
  return [...resources(tree.get('modules/lb/aws')!, 'aws_lb_listener_rule').values()]
    .filter((rule) => blocks(rule.action).some((action) => action.type === 'fixed-response' && Number(blocks(action.fixed_response)[0]?.status_code) >= 400))
    .flatMap((rule) => blocks(rule.condition).flatMap((condition) => blocks(condition.path_pattern)).flatMap((pattern) => pattern.values as string[]))
    .some((pattern) => albPattern(pattern).test(path))
}

/** Paths the GCP URL map aborts: route rules of modules/lb/gcp with a 100 % abort. */
function refusedByGcp (path: string): boolean {
  const map = resources(tree.get('modules/lb/gcp')!, 'google_compute_url_map').get('https')
  return blocks(map?.path_matcher).flatMap((matcher) => blocks(matcher.route_rules))
    .filter((rule) => blocks(rule.route_action).flatMap((action) => blocks(action.fault_injection_policy)).flatMap((policy) => blocks(policy.abort))
      .some((abort) => Number(abort.percentage) === 100 && Number(abort.http_status) >= 400))
    .flatMap((rule) => blocks(rule.match_rules))
    .some((match) => {
      if (typeof match.prefix_match === 'string') {
        return match.ignore_case === true ? path.toLowerCase().startsWith(match.prefix_match.toLowerCase()) : path.startsWith(match.prefix_match)
      }
      if (typeof match.full_path_match === 'string') return path === match.full_path_match
      // RE2 and JavaScript agree on this subset; the URL map matches the whole path
      if (typeof match.regex_match === 'string') return new RegExp(`^(?:${match.regex_match})$`).test(path)
      return false
    })
}

/** "/metrics" with each letter, and all of them, percent-escaped in lower- and upper-case hex. */
function spellings (): string[] {
  const word = 'metrics'
  const escape = (char: string, upper: boolean) => `%${char.charCodeAt(0).toString(16)[upper ? 'toUpperCase' : 'toLowerCase']()}`
  const found = new Set(['/metrics', '/metrics/', '/METRICS', '//metrics', '/metrics/x', '/%2Fmetrics', '/%252Fmetrics', '/%256Detrics'])
  for (const upper of [false, true]) {
    for (let index = 0; index < word.length; index += 1) {
      found.add(`/${word.slice(0, index)}${escape(word[index], upper)}${word.slice(index + 1)}`)
    }
    found.add(`/${[...word].map((char) => escape(char, upper)).join('')}`)
  }
  return [...found]
}

const METRICS_TOKEN = 'm'.repeat(24) + '0123456789abcdef'

t.test('every spelling the application serves as /metrics is refused by both load balancers', async (t) => {
  const open = await build(t)
  const served: string[] = []
  for (const path of spellings()) {
    const response = await open.inject({ method: 'GET', url: path })
    if (response.statusCode === 200 && response.body.includes('# HELP')) served.push(path)
  }
  t.ok(served.includes('/metrics'), 'the plain path is served (without a token configured)')
  // today the escaped spellings reach the route as well (find-my-way decodes them)
  t.comment(`served as /metrics: ${served.join(' ')}`)
  for (const path of served) {
    t.ok(refusedByAlb(path), `the ALB refuses ${path}`)
    t.ok(refusedByGcp(path), `the GCP load balancer refuses ${path}`)
  }

  const guarded = await build(t, { env: { METRICS_TOKEN } })
  for (const path of served) {
    t.equal((await guarded.inject({ method: 'GET', url: path })).statusCode, 401, `behind them, ${path} needs the METRICS_TOKEN`)
  }
})

t.test('the refusal rules leave the API and its health endpoints alone', async (t) => {
  for (const path of ['/api/v1/agents', '/api/v1/token', '/api/v1/agents/6f1c2a57-9a1e-4d3b-8c55-2b9f3e0a7d41/credentials',
    '/.well-known/jwks.json', '/.well-known/oauth-authorization-server', '/health', '/health/live', '/health/ready', '/docs', '/docs/json']) {
    t.notOk(refusedByAlb(path), `the ALB forwards ${path}`)
    t.notOk(refusedByGcp(path), `the GCP load balancer forwards ${path}`)
  }
})

t.test('the matchers used above read the rules as the load balancers do', async (t) => {
  t.ok(albPattern('/metrics/*').test('/metrics/a/b'), 'ALB "*" spans slashes')
  t.notOk(albPattern('/metrics').test('/METRICS'), 'ALB paths are case-sensitive')
  t.ok(albPattern('/?x').test('/ax') && !albPattern('/?x').test('/abx'), 'ALB "?" is one character')
})
