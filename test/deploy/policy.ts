import { moduleCalls, resources, variables, type TfModule } from './hcl.js'

/**
 * Checkov-style rules over the parsed Terraform tree (tflint and checkov cannot be installed where
 * the tests run). Each rule looks at every module of the tree, so a resource added anywhere is
 * checked; it answers a list of findings, empty when the tree complies.
 *
 * Values are resolved the way they reach the resource: a literal is itself; "${var.X}" is what each
 * caller of the module passes for X when that is a literal, else X's default. A value the parser
 * cannot resolve (a computed expression) is reported rather than assumed to comply.
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type Block = Record<string, Json>
export type Tree = Map<string, TfModule>

export interface Rule {
  id: string
  title: string
  check: (tree: Tree) => string[]
}

const isObject = (value: unknown): value is Record<string, Json> => value !== null && typeof value === 'object' && !Array.isArray(value)

/** The first of a nested block, as hcl2json nests them in arrays ({ health_check: [ {...} ] }). */
function nested (block: Json | undefined, ...path: string[]): Block | undefined {
  let current: Json | undefined = block
  for (const key of path) {
    if (!isObject(current)) return undefined
    current = current[key]
    if (Array.isArray(current)) current = current[0]
  }
  return isObject(current) ? current : undefined
}

/** Every nested block at a path, flattening the arrays on the way. */
function nestedAll (block: Json | undefined, ...path: string[]): Block[] {
  let current: Json[] = block === undefined ? [] : [block]
  for (const key of path) {
    current = current.flatMap((item) => {
      if (!isObject(item)) return []
      const next = item[key]
      return next === undefined ? [] : Array.isArray(next) ? next : [next]
    })
  }
  return current.filter(isObject)
}

/** Each (module, name, block) of a resource type across the tree. */
function * everywhere (tree: Tree, type: string): Generator<{ module: TfModule, name: string, block: Block, where: string }> {
  for (const module of tree.values()) {
    for (const [name, block] of resources(module, type)) yield { module, name, block, where: `${module.dir}: ${type}.${name}` }
  }
}

const VARIABLE = /^\$\{var\.([A-Za-z_][\w-]*)\}$/

/** The values a resource argument takes: see the file comment. */
export function resolve (tree: Tree, module: TfModule, value: Json | undefined): Json[] {
  if (typeof value !== 'string') return [value ?? null]
  const reference = VARIABLE.exec(value)
  if (reference === null) return [value]
  const name = reference[1]
  const declared = variables(module).find((entry) => entry.name === name)
  const fallback = declared !== undefined && 'default' in declared.block ? declared.block.default : undefined
  const callers = [...tree.values()].flatMap((caller) => moduleCalls(caller)
    .filter((call) => call.source.startsWith('.') && normalise(`${caller.dir}/${call.source}`) === module.dir)
    .map((call) => ({ caller, passed: call.args[name] })))
  if (callers.length === 0) return [fallback ?? value]
  return callers.flatMap(({ caller, passed }) => passed === undefined ? [fallback ?? value] : resolve(tree, caller, passed))
}

function normalise (path: string): string {
  const parts: string[] = []
  for (const part of path.split('/')) {
    if (part === '..') parts.pop()
    else if (part !== '.' && part !== '') parts.push(part)
  }
  return parts.join('/')
}

/** Findings for each resolved value of `value` that `ok` refuses. */
function expect (tree: Tree, module: TfModule, where: string, what: string, value: Json | undefined, ok: (value: Json) => boolean): string[] {
  return resolve(tree, module, value).filter((resolved) => !ok(resolved)).map((resolved) => `${where}: ${what} is ${JSON.stringify(resolved)}`)
}

const WORLD = new Set(['0.0.0.0/0', '::/0'])

/** CIDRs a security-group rule admits, resolving "each.value" of a for_each over a variable's set. */
function ruleCidrs (tree: Tree, module: TfModule, block: Block): Json[] {
  const cidrs: Json[] = []
  for (const key of ['cidr_ipv4', 'cidr_ipv6', 'cidr_blocks', 'ipv6_cidr_blocks']) {
    const value = block[key]
    if (value === undefined) continue
    if (value === '${each.value}' || value === '${each.key}') {
      const set = /^\$\{toset\((var\.[\w-]+)\)\}$/.exec(String(block.for_each))
      cidrs.push(...(set === null ? [String(block.for_each)] : resolve(tree, module, `\${${set[1]}}`).flatMap((item) => Array.isArray(item) ? item : [item])))
    } else {
      cidrs.push(...resolve(tree, module, value).flatMap((item) => Array.isArray(item) ? item : [item]))
    }
  }
  return cidrs
}

export const RULES: Rule[] = [
  {
    id: 'no-world-ingress',
    title: 'no security group admits 0.0.0.0/0 or ::/0, except the load balancer on 80 and 443',
    check (tree) {
      const findings: string[] = []
      const ingress: Array<{ module: TfModule, where: string, block: Block, group: string }> = []
      for (const { module, block, where } of everywhere(tree, 'aws_vpc_security_group_ingress_rule')) ingress.push({ module, where, block, group: String(block.security_group_id) })
      for (const { module, block, where } of everywhere(tree, 'aws_security_group_rule')) {
        if (block.type === 'ingress') ingress.push({ module, where, block, group: String(block.security_group_id) })
      }
      for (const { module, block, where, name } of everywhere(tree, 'aws_security_group')) {
        for (const inline of nestedAll(block, 'ingress')) ingress.push({ module, where, block: inline, group: `\${aws_security_group.${name}.id}` })
      }
      for (const { module, block, where, group } of ingress) {
        if (!ruleCidrs(tree, module, block).some((cidr) => typeof cidr === 'string' && (WORLD.has(cidr) || cidr.includes('${')))) continue
        const port = block.from_port === block.to_port ? Number(block.from_port) : NaN
        const loadBalancer = /aws_security_group\.(alb|lb|load_balancer)\.id/.test(group)
        if (!loadBalancer || ![80, 443].includes(port)) findings.push(`${where}: open to the internet on ${String(block.from_port)}-${String(block.to_port)}`)
      }
      for (const { module, block, where } of everywhere(tree, 'google_compute_firewall')) {
        const ranges = resolve(tree, module, block.source_ranges).flatMap((item) => Array.isArray(item) ? item : [item])
        if (block.direction !== 'EGRESS' && ranges.some((range) => typeof range === 'string' && WORLD.has(range))) findings.push(`${where}: open to the internet`)
      }
      return findings
    }
  },
  {
    id: 'rds-hardened',
    title: 'RDS: storage encrypted, not public, Multi-AZ, deletion protection, 7+ days of backups, final snapshot',
    check (tree) {
      return [...everywhere(tree, 'aws_db_instance')].flatMap(({ module, block, where }) => [
        ...expect(tree, module, where, 'storage_encrypted', block.storage_encrypted, (value) => value === true),
        ...expect(tree, module, where, 'publicly_accessible', block.publicly_accessible, (value) => value === false),
        ...expect(tree, module, where, 'multi_az', block.multi_az, (value) => value === true),
        ...expect(tree, module, where, 'deletion_protection', block.deletion_protection, (value) => value === true),
        ...expect(tree, module, where, 'backup_retention_period', block.backup_retention_period, (value) => typeof value === 'number' && value >= 7),
        ...expect(tree, module, where, 'skip_final_snapshot', block.skip_final_snapshot, (value) => value === false)
      ])
    }
  },
  {
    id: 'cloud-sql-hardened',
    title: 'Cloud SQL: private IP only, TLS required from a CA whose certificates name the host, backups with PITR, deletion protection',
    check (tree) {
      return [...everywhere(tree, 'google_sql_database_instance')].flatMap(({ module, block, where }) => {
        const ip = nested(block, 'settings', 'ip_configuration')
        const backups = nested(block, 'settings', 'backup_configuration')
        return [
          ...expect(tree, module, where, 'ipv4_enabled', ip?.ipv4_enabled, (value) => value === false),
          ...expect(tree, module, where, 'ssl_mode', ip?.ssl_mode, (value) => value === 'ENCRYPTED_ONLY' || value === 'TRUSTED_CLIENT_CERTIFICATE_REQUIRED'),
          ...expect(tree, module, where, 'server_ca_mode', ip?.server_ca_mode, (value) => value === 'GOOGLE_MANAGED_CAS_CA' || value === 'CUSTOMER_MANAGED_CAS_CA'),
          ...expect(tree, module, where, 'backups', backups?.enabled, (value) => value === true),
          ...expect(tree, module, where, 'point_in_time_recovery_enabled', backups?.point_in_time_recovery_enabled, (value) => value === true),
          ...expect(tree, module, where, 'deletion_protection', block.deletion_protection, (value) => value === true)
        ]
      })
    }
  },
  {
    id: 'redis-encrypted',
    title: 'Redis: encryption in transit and AUTH (ElastiCache also at rest)',
    check (tree) {
      return [
        ...[...everywhere(tree, 'aws_elasticache_replication_group')].flatMap(({ module, block, where }) => [
          ...expect(tree, module, where, 'transit_encryption_enabled', block.transit_encryption_enabled, (value) => value === true),
          ...expect(tree, module, where, 'at_rest_encryption_enabled', block.at_rest_encryption_enabled, (value) => value === true),
          ...(typeof block.auth_token === 'string' && block.auth_token !== '' ? [] : [`${where}: no auth_token`])
        ]),
        ...[...everywhere(tree, 'google_redis_instance')].flatMap(({ module, block, where }) => [
          ...expect(tree, module, where, 'transit_encryption_mode', block.transit_encryption_mode, (value) => value === 'SERVER_AUTHENTICATION'),
          ...expect(tree, module, where, 'auth_enabled', block.auth_enabled, (value) => value === true)
        ])
      ]
    }
  },
  {
    id: 'no-public-ip',
    title: 'tasks get no public IP, public subnets hand none out, Cloud Run takes traffic only through the load balancer',
    check (tree) {
      return [
        ...[...everywhere(tree, 'aws_ecs_service')].flatMap(({ module, block, where }) =>
          expect(tree, module, where, 'assign_public_ip', nested(block, 'network_configuration')?.assign_public_ip, (value) => value === false)),
        ...[...everywhere(tree, 'aws_subnet')].flatMap(({ module, block, where }) =>
          block.map_public_ip_on_launch === undefined ? [] : expect(tree, module, where, 'map_public_ip_on_launch', block.map_public_ip_on_launch, (value) => value === false)),
        ...[...everywhere(tree, 'google_cloud_run_v2_service')].flatMap(({ module, block, where }) =>
          expect(tree, module, where, 'ingress', block.ingress, (value) => value === 'INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER' || value === 'INGRESS_TRAFFIC_INTERNAL_ONLY'))
      ]
    }
  },
  {
    id: 'probes-split',
    title: 'liveness (/health/live) restarts, readiness (/health/ready) routes: ECS container check, target group, Cloud Run probes',
    check (tree) {
      const findings: string[] = []
      for (const module of tree.values()) {
        const text = JSON.stringify(module.json.locals ?? null)
        for (const match of text.matchAll(/"healthCheck":\{"command":\[[^\]]*\]/g)) {
          if (!match[0].includes('/health/live')) findings.push(`${module.dir}: an ECS container health check does not probe /health/live: ${match[0]}`)
        }
      }
      // container definitions written inline rather than through locals
      for (const { block, where } of everywhere(tree, 'aws_ecs_task_definition')) {
        const definitions = JSON.stringify(block.container_definitions ?? '')
        if (definitions.includes('healthCheck') && !definitions.includes('/health/live')) findings.push(`${where}: the container health check does not probe /health/live`)
      }
      for (const { module, block, where } of everywhere(tree, 'aws_lb_target_group')) {
        findings.push(...expect(tree, module, where, 'health_check.path', nested(block, 'health_check')?.path, (value) => value === '/health/ready'))
      }
      for (const { module, block, where } of everywhere(tree, 'google_cloud_run_v2_service')) {
        for (const container of nestedAll(block, 'template', 'containers')) {
          findings.push(...expect(tree, module, where, 'startup_probe path', nested(container, 'startup_probe', 'http_get')?.path, (value) => value === '/health/ready'))
          findings.push(...expect(tree, module, where, 'liveness_probe path', nested(container, 'liveness_probe', 'http_get')?.path, (value) => value === '/health/live'))
        }
      }
      return findings
    }
  },
  {
    id: 'ecs-circuit-breaker',
    title: 'ECS deployments stop and roll back when new tasks never become healthy',
    check (tree) {
      return [...everywhere(tree, 'aws_ecs_service')].flatMap(({ module, block, where }) => {
        const breaker = nested(block, 'deployment_circuit_breaker')
        return [
          ...expect(tree, module, where, 'deployment_circuit_breaker.enable', breaker?.enable, (value) => value === true),
          ...expect(tree, module, where, 'deployment_circuit_breaker.rollback', breaker?.rollback, (value) => value === true)
        ]
      })
    }
  },
  {
    id: 'metrics-not-public',
    title: '/metrics is refused by every load balancer before it is forwarded',
    check (tree) {
      const findings: string[] = []
      for (const { module, block, where, name } of everywhere(tree, 'aws_lb_listener')) {
        if (block.protocol !== 'HTTPS' && nested(block, 'default_action')?.type !== 'forward') continue
        const rules = [...resources(module, 'aws_lb_listener_rule')].filter(([, rule]) => rule.listener_arn === `\${aws_lb_listener.${name}.arn}`)
        const refusing = rules.filter(([, rule]) => {
          const action = nested(rule, 'action')
          const status = Number(nested(action, 'fixed_response')?.status_code)
          const paths = nestedAll(rule, 'condition', 'path_pattern').flatMap((pattern) => Array.isArray(pattern.values) ? pattern.values : [])
          return action?.type === 'fixed-response' && status >= 400 && paths.includes('/metrics')
        })
        if (refusing.length === 0) findings.push(`${where}: no rule refuses /metrics`)
        const first = Math.min(...rules.map(([, rule]) => Number(rule.priority)))
        if (refusing.length > 0 && !refusing.some(([, rule]) => Number(rule.priority) === first)) findings.push(`${where}: another rule is evaluated before the one refusing /metrics`)
      }
      for (const { block, where } of everywhere(tree, 'google_compute_url_map')) {
        if (block.default_url_redirect !== undefined) continue // an HTTP->HTTPS redirect serves nothing
        const refusing = nestedAll(block, 'path_matcher', 'route_rules').some((rule) => {
          const abort = nested(rule, 'route_action', 'fault_injection_policy', 'abort')
          const matches = nestedAll(rule, 'match_rules').some((match) => match.prefix_match === '/metrics' || match.full_path_match === '/metrics')
          return matches && Number(abort?.percentage) === 100 && Number(abort?.http_status) >= 400
        })
        if (!refusing) findings.push(`${where}: no route rule refuses /metrics`)
      }
      return findings
    }
  },
  {
    id: 'metrics-token-from-secrets',
    title: 'every deployment gets METRICS_TOKEN from its secret store',
    check (tree) {
      const findings: string[] = []
      for (const module of tree.values()) {
        for (const call of moduleCalls(module)) {
          if (!/modules\/agentidp\//.test(call.source)) continue
          const secrets = call.args.secrets ?? call.args.secret_env
          if (!isObject(secrets) || !('METRICS_TOKEN' in secrets)) findings.push(`${module.dir}: module "${call.name}" gets no METRICS_TOKEN from the secret store`)
        }
      }
      return findings
    }
  },
  {
    id: 'database-tls-verify-full',
    title: 'DATABASE_URL verifies the server (sslmode=verify-full with sslrootcert); no weaker sslmode anywhere',
    check (tree) {
      const findings: string[] = []
      for (const module of tree.values()) {
        for (const file of module.files) {
          const text = file.text.split('\n').filter((line) => !/^\s*(#|\/\/)/.test(line)).join('\n')
          for (const match of text.matchAll(/sslmode=([\w-]+)/g)) {
            if (match[1] !== 'verify-full') findings.push(`${module.dir}/${file.name}: sslmode=${match[1]}`)
          }
          if (/no-verify/.test(text)) findings.push(`${module.dir}/${file.name}: mentions no-verify outside a comment`)
          for (const match of text.matchAll(/"postgres(?:ql)?:\/\/[^"\n]*"/g)) {
            if (!/[?&]sslmode=verify-full(&|")/.test(match[0]) || !/[?&]sslrootcert=/.test(match[0])) findings.push(`${module.dir}/${file.name}: ${match[0].replace(/:\$\{[^}]*\}@/, ':…@')} does not verify the server`)
          }
        }
      }
      for (const { module, block, where } of everywhere(tree, 'aws_db_parameter_group')) {
        for (const parameter of nestedAll(block, 'parameter')) {
          if (parameter.name !== 'rds.force_ssl') continue
          const value = /^\$\{(var\.[\w-]+) \? "1" : "0"\}$/.exec(String(parameter.value))
          findings.push(...expect(tree, module, where, 'rds.force_ssl', value === null ? parameter.value : `\${${value[1]}}`, (resolved) => resolved === true || resolved === '1'))
        }
      }
      return findings
    }
  },
  {
    id: 'secrets-not-in-plain-env',
    title: 'no secret is a plain environment variable of a deployment',
    check (tree) {
      const secretName = /(SECRET|PASSWORD|PASSWD|PRIVATE_KEY|_TOKEN)$|^(TOKEN|DATABASE_URL|REDIS_URL)$/i
      const findings: string[] = []
      for (const module of tree.values()) {
        for (const call of moduleCalls(module)) {
          if (!/modules\/agentidp\//.test(call.source)) continue
          const environment = call.args.environment
          const names = isObject(environment)
            ? Object.keys(environment)
            : [...String(environment).matchAll(/^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=/gm)].map((match) => match[1])
          for (const name of names) if (secretName.test(name)) findings.push(`${module.dir}: module "${call.name}" sets ${name} as a plain environment variable`)
          if (typeof environment === 'string' && environment.includes('var.extra_environment')) {
            const validation = JSON.stringify(variables(module).find((entry) => entry.name === 'extra_environment')?.block.validation ?? null)
            if (!/PRIVATE_KEY/.test(validation) || !/_TOKEN/.test(validation)) findings.push(`${module.dir}: extra_environment does not refuse secret names`)
          }
        }
      }
      return findings
    }
  },
  {
    id: 'alb-hardened',
    title: 'ALB: TLS 1.2+ policy, HTTP only redirects, invalid headers dropped, X-Forwarded-For appended without port',
    check (tree) {
      const findings: string[] = []
      for (const { module, block, where } of everywhere(tree, 'aws_lb')) {
        if (block.load_balancer_type !== 'application') continue
        findings.push(...expect(tree, module, where, 'drop_invalid_header_fields', block.drop_invalid_header_fields, (value) => value === true))
        findings.push(...expect(tree, module, where, 'xff_header_processing_mode', block.xff_header_processing_mode, (value) => value === 'append'))
        findings.push(...expect(tree, module, where, 'enable_xff_client_port', block.enable_xff_client_port, (value) => value === false))
      }
      for (const { module, block, where } of everywhere(tree, 'aws_lb_listener')) {
        if (block.protocol === 'HTTPS') {
          findings.push(...expect(tree, module, where, 'ssl_policy', block.ssl_policy, (value) => typeof value === 'string' && /TLS13|TLS-1-2/.test(value)))
        } else if (nested(block, 'default_action')?.type !== 'redirect' || nested(block, 'default_action', 'redirect')?.protocol !== 'HTTPS') {
          findings.push(`${where}: a plain-HTTP listener that does not redirect to HTTPS`)
        }
      }
      return findings
    }
  }
]

/** Findings of every rule, by rule id (empty arrays included, so a report names each rule). */
export function checkPolicy (tree: Tree): Record<string, string[]> {
  return Object.fromEntries(RULES.map((rule) => [rule.id, rule.check(tree)]))
}
