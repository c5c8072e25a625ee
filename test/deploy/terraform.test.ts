import { spawnSync } from 'node:child_process'
import { accessSync, constants, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import pg from 'pg'
import t from 'tap'
import { projectRoot } from '../../lib/paths.js'
import { checkTree, loadTree, moduleCalls, outputs, parseModule, resources, variables, type TfModule } from './hcl.js'

/**
 * terraform/ without a cloud: `terraform fmt -check -recursive` (the providers cannot be downloaded
 * here, so `terraform validate` cannot run), then a structural check of the parsed HCL and the
 * shape the deployment issue asks of each environment.
 */

const root = join(projectRoot, 'terraform')

function findTerraform (): string | null {
  const candidates = [process.env.TERRAFORM_BIN, ...(process.env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'terraform')), '/usr/local/bin/terraform']
  for (const candidate of candidates) {
    if (candidate === undefined || candidate === '') continue
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {}
  }
  return null
}

// parsed before the first subtest: the root test ends once its queue is empty
const tree = await loadTree(root)
const module = (dir: string): TfModule => {
  const found = tree.get(dir)
  if (found === undefined) throw new Error(`terraform/${dir} is missing`)
  return found
}

const terraform = findTerraform()
const noTerraform = 'the terraform binary is not installed (not on PATH, not /usr/local/bin/terraform, TERRAFORM_BIN unset): fmt not checked'
t.test('terraform fmt -check -recursive', { skip: terraform === null ? noTerraform : false }, async (t) => {
  if (terraform === null) return
  // TF_CLI_CONFIG_FILE=/dev/null: no warning about a missing ~/.terraformrc
  const result = spawnSync(terraform, ['fmt', '-check', '-recursive', '-diff', root], {
    encoding: 'utf8', timeout: 60_000, env: { ...process.env, TF_CLI_CONFIG_FILE: '/dev/null', TF_IN_AUTOMATION: '1' }
  })
  t.equal(result.status, 0, 'every .tf file is formatted (run `terraform fmt -recursive terraform`)', { stdout: result.stdout, stderr: result.stderr })
})

t.test('the layout: four modules for each cloud, two environments', async (t) => {
  const expected = ['environments/aws', 'environments/gcp',
    ...['agentidp', 'lb', 'rds', 'redis'].flatMap((name) => [`modules/${name}/aws`, `modules/${name}/gcp`])]
  t.same([...tree.keys()].sort(), expected.sort())
  for (const dir of expected) {
    for (const file of ['main.tf', 'variables.tf', 'outputs.tf', 'versions.tf']) {
      if (dir.startsWith('environments') && file === 'main.tf') continue
      t.ok(existsSync(join(root, dir, file)), `${dir}/${file}`)
    }
    const settings = module(dir).json.terraform
    t.ok(JSON.stringify(settings ?? '').includes('required_providers'), `${dir} pins its providers`)
  }
})

t.test('structure: variables declared, typed and described; module calls complete; outputs described; no secret literals', async (t) => {
  const problems = checkTree(tree)
  t.same(problems.undeclared, [], 'every var.X a module uses is declared in it')
  t.same(problems.calls, [], "every module call passes all of the module's required variables and no unknown one")
  t.same(problems.undocumented, [], 'every variable has a type and a description, every output a description')
  t.same(problems.secrets, [], 'no password, token or key literal')
  t.ok(moduleCalls(module('environments/aws')).length === 4 && moduleCalls(module('environments/gcp')).length === 4,
    'each environment calls the four modules')
})

t.test('the checker finds what it must (fixtures)', async (t) => {
  const child = await parseModule('modules/child', [{
    name: 'main.tf',
    text: `
variable "name" {
  type        = string
  description = "required"
}
variable "size" {
  type        = number
  description = "optional"
  default     = 1
}
variable "db_password" {
  type        = string
  description = "a literal default"
  default     = "hunter2hunter2"
}
variable "untyped" {}
resource "aws_db_instance" "x" {
  identifier = var.name
  password   = "s3cr3t-literal"
  engine     = var.engine
}
output "id" { value = aws_db_instance.x.id }
`
  }])
  const parent = await parseModule('env', [{
    name: 'main.tf',
    text: `
module "child" {
  source = "../modules/child"
  size   = 2
  colour = "blue"
}
module "missing" {
  source = "../modules/none"
}
resource "aws_secretsmanager_secret_version" "x" {
  secret_string = "postgresql://app:plaintext@db:5432/app"
}
`
  }])
  const problems = checkTree(new Map([['modules/child', child], ['env', parent]]))

  t.match(problems.undeclared, [/var\.engine/], 'an undeclared variable')
  t.ok(problems.calls.some((problem) => /does not pass name/.test(problem)), 'a missing required variable')
  t.ok(problems.calls.some((problem) => /passes colour/.test(problem)), 'an unknown argument')
  t.ok(problems.calls.some((problem) => /modules\/none/.test(problem)), 'a source outside the tree')
  t.notOk(problems.calls.some((problem) => /does not pass (size|db_password)/.test(problem)), 'optional variables may be left out')
  t.ok(problems.undocumented.some((problem) => /"untyped" has no type/.test(problem)), 'an untyped variable')
  t.ok(problems.undocumented.some((problem) => /output "id" has no description/.test(problem)), 'an undescribed output')
  t.ok(problems.secrets.some((problem) => /password is a literal/.test(problem)), 'a literal password attribute')
  t.ok(problems.secrets.some((problem) => /db_password" has a literal default/.test(problem)), 'a password variable with a default')
  t.ok(problems.secrets.some((problem) => /secret_string is a literal/.test(problem)), 'a literal secret value')
  t.ok(problems.secrets.some((problem) => /connection URL with a literal password/.test(problem)), 'a URL with a password')
})

/** The default of a variable, or what the caller passes for it. */
function passed (caller: string, call: string, variable: string): unknown {
  const found = moduleCalls(module(caller)).find((entry) => entry.name === call)
  return found?.args[variable]
}
function defaultOf (dir: string, variable: string): unknown {
  return variables(module(dir)).find((entry) => entry.name === variable)?.block.default
}
const text = (dir: string) => module(dir).files.map((file) => file.text).join('\n')

t.test('AWS: VPC across AZs, ECS Fargate, ALB HTTPS + readiness target group, RDS 14 Multi-AZ, Redis 7 with a replica, Secrets Manager, IAM, Route 53', async (t) => {
  const env = 'environments/aws'
  t.equal(resources(module(env), 'aws_vpc').size, 1, 'a VPC')
  const subnets = resources(module(env), 'aws_subnet')
  t.same([...subnets.keys()].sort(), ['private', 'public'], 'public and private subnets')
  for (const [name, subnet] of subnets) t.equal(subnet.count, '${var.az_count}', `one ${name} subnet per AZ`)
  t.match(JSON.stringify(variables(module(env)).find((entry) => entry.name === 'az_count')?.block.validation), /az_count >= 2/, 'at least two AZs')
  t.ok(resources(module(env), 'aws_nat_gateway').size > 0, 'NAT for the private subnets')
  t.ok(resources(module(env), 'aws_security_group').size >= 4, 'a security group per tier')
  t.notMatch(text(env), /from_port\s*=\s*0[\s\S]{0,80}to_port\s*=\s*65535/, 'no all-ports rule')
  t.ok(resources(module(env), 'aws_route53_record').has('app'), 'a Route 53 record for the IdP')
  t.ok(resources(module(env), 'aws_acm_certificate_validation').size === 1, 'a validated certificate')
  t.ok(resources(module(env), 'aws_secretsmanager_secret').size >= 3, 'Secrets Manager secrets')
  t.match(text(env), /#\s*backend "s3"/, 'a commented remote-state backend')

  const ecs = 'modules/agentidp/aws'
  const task = resources(module(ecs), 'aws_ecs_task_definition').get('app')
  t.same(task?.requires_compatibilities, ['FARGATE'], 'Fargate task definition')
  t.match(text(ecs), /secrets\s*=\s*local\.secrets/, 'secrets injected into the container definition')
  t.match(text(ecs), /valueFrom\s*=/, 'valueFrom references')
  t.match(text(ecs), /secretsmanager:GetSecretValue/, 'the execution role may read the secrets')
  t.ok(resources(module(ecs), 'aws_iam_role').size === 2, 'execution and task roles')
  t.ok(resources(module(ecs), 'aws_ecs_service').size === 1 && resources(module(ecs), 'aws_appautoscaling_policy').size === 1, 'service with autoscaling')
  t.match(text(ecs), /user\s*=\s*"1001:1001"/, 'runs as UID 1001')

  const lb = 'modules/lb/aws'
  const listener = resources(module(lb), 'aws_lb_listener').get('https')
  t.equal(listener?.protocol, 'HTTPS')
  t.equal(listener?.port, 443)
  t.match(JSON.stringify(resources(module(lb), 'aws_lb_target_group').get('app')?.health_check), /var\.health_check_path/)
  t.equal(defaultOf(lb, 'health_check_path'), '/health/ready', 'the target group probes readiness by default')
  t.equal(passed(env, 'lb', 'health_check_path'), '/health/ready', 'and the environment keeps it')

  const rds = 'modules/rds/aws'
  const instance = resources(module(rds), 'aws_db_instance').get('this')
  t.equal(instance?.engine, 'postgres')
  t.equal(defaultOf(rds, 'engine_version'), '14')
  t.equal(instance?.multi_az, '${var.multi_az}')
  t.equal(passed(env, 'rds', 'multi_az'), true, 'Multi-AZ')
  t.equal(instance?.storage_encrypted, true)
  t.equal(instance?.publicly_accessible, false)

  const redis = 'modules/redis/aws'
  const group = resources(module(redis), 'aws_elasticache_replication_group').get('this')
  t.match(String(defaultOf(redis, 'engine_version')), /^7/, 'Redis 7')
  t.equal(group?.num_cache_clusters, '${var.replica_count + 1}', 'primary + replicas')
  t.equal(group?.automatic_failover_enabled, true)
  t.equal(group?.transit_encryption_enabled, true)
  t.ok(Number(passed(env, 'redis', 'replica_count')) >= 1, 'at least one replica')

  for (const name of ['issuer_url', 'health_url', 'load_balancer_dns_name', 'rds_endpoint', 'redis_primary_endpoint']) {
    t.ok(outputs(module(env)).has(name), `output ${name}`)
  }
})

t.test('GCP: Cloud Run min/max, VPC connector, Cloud SQL 14 REGIONAL, Memorystore 7 STANDARD_HA with TLS, Secret Manager mounts, global LB, service accounts', async (t) => {
  const env = 'environments/gcp'
  t.equal(resources(module(env), 'google_vpc_access_connector').size, 1, 'Serverless VPC Access connector')
  t.equal(resources(module(env), 'google_service_networking_connection').size, 1, 'private services access')
  t.ok(resources(module(env), 'google_secret_manager_secret').size >= 3, 'Secret Manager secrets')
  t.match(text(env), /#\s*backend "gcs"/, 'a commented remote-state backend')

  const run = 'modules/agentidp/gcp'
  const service = resources(module(run), 'google_cloud_run_v2_service').get('this')
  const template = JSON.stringify(service?.template)
  t.match(template, /min_instance_count.*var\.min_instances/, 'min instances')
  t.match(template, /max_instance_count.*var\.max_instances/, 'max instances')
  t.match(template, /vpc_access.*var\.vpc_connector_id/, 'egress through the connector')
  t.match(template, /secret_key_ref/, 'secrets as environment variables')
  t.match(template, /volume_mounts/, 'secrets mounted as files')
  t.match(template, /startup_probe.*"path":"\/health\/ready"/, 'startup probe on /health/ready')
  t.match(template, /liveness_probe.*"path":"\/health\/live"/, 'liveness probe on /health/live')
  t.match(template, /"cpu_idle":false/, 'CPU stays allocated between requests, so the background jobs keep running')
  t.ok(resources(module(run), 'google_service_account').size === 1, 'a service account')
  t.match(text(run), /roles\/secretmanager\.secretAccessor/, 'which may read its secrets')
  t.ok(resources(module(run), 'google_cloud_run_v2_job').has('migrate'), 'a migration job')

  const sql = 'modules/rds/gcp'
  const database = resources(module(sql), 'google_sql_database_instance').get('this')
  t.equal(database?.database_version, 'POSTGRES_14')
  t.equal(defaultOf(sql, 'availability_type'), 'REGIONAL')
  t.equal(passed(env, 'rds', 'availability_type'), 'REGIONAL')
  t.match(JSON.stringify(database?.settings), /"ipv4_enabled":false/, 'private IP only')

  const memorystore = 'modules/redis/gcp'
  const redis = resources(module(memorystore), 'google_redis_instance').get('this')
  t.equal(redis?.tier, 'STANDARD_HA')
  t.equal(redis?.transit_encryption_mode, 'SERVER_AUTHENTICATION', 'in-transit encryption')
  t.equal(redis?.auth_enabled, true)
  t.match(String(defaultOf(memorystore, 'redis_version')), /^REDIS_7_/)

  const lb = 'modules/lb/gcp'
  t.ok(resources(module(lb), 'google_compute_global_forwarding_rule').has('https'), 'global HTTPS forwarding rule')
  t.ok(resources(module(lb), 'google_compute_managed_ssl_certificate').size === 1, 'managed certificate')
  t.equal(resources(module(lb), 'google_compute_region_network_endpoint_group').get('this')?.network_endpoint_type, 'SERVERLESS')

  for (const name of ['issuer_url', 'health_url', 'load_balancer_ip', 'cloud_run_uri', 'cloud_sql_connection_name', 'redis_host']) {
    t.ok(outputs(module(env)).has(name), `output ${name}`)
  }
})

t.test('the migration task and job run the command of compose.yaml and `npm run db:migrate`', async (t) => {
  const compose = readFileSync(join(projectRoot, 'compose.yaml'), 'utf8')
  for (const dir of ['modules/agentidp/aws', 'modules/agentidp/gcp']) {
    const command = defaultOf(dir, 'migrate_command') as string[]
    t.ok(Array.isArray(command) && command.length > 2, `${dir}: migrate_command`)
    for (const argument of command) t.ok(compose.includes(`- ${argument}\n`), `${dir}: ${argument} is in compose.yaml's migrate command`)
  }
})

/**
 * The DATABASE_URL each environment writes, with sample values in place of its interpolations, as
 * node-postgres reads it: TLS on, the CA read from the sslrootcert file, certificate and host name
 * checked (nothing turns rejectUnauthorized off or replaces checkServerIdentity).
 */
t.test('DATABASE_URL as the environments write it makes node-postgres verify the server', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'agentidp-ca-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const caFile = join(dir, 'ca.pem')
  const pem = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n'
  writeFileSync(caFile, pem)

  const written: Array<[string, string, string]> = [
    ['environments/aws', 'aws_secretsmanager_secret_version', 'secret_string'],
    ['environments/gcp', 'google_secret_manager_secret_version', 'secret_data']
  ]
  for (const [env, type, attribute] of written) {
    const template = String(resources(module(env), type).get('database_url')?.[attribute])
    t.match(template, /^postgresql:\/\//, `${env}: a PostgreSQL URL`)
    const sslrootcert = /[?&]sslrootcert=\$\{([^}]+)\}/.exec(template)
    t.ok(sslrootcert, `${env}: sslrootcert comes from ${sslrootcert?.[1]}`)
    // the path the container will read, then every interpolation replaced by a sample
    const url = template.replace(/sslrootcert=\$\{[^}]+\}/, `sslrootcert=${caFile}`)
      .replace(/\$\{[^}]*\.port\}/g, '5432').replace(/\$\{[^}]+\}/g, 'x')
    const client = new pg.Client({ connectionString: url })
    const ssl = (client as unknown as { connectionParameters: { ssl: unknown } }).connectionParameters.ssl as Record<string, unknown>
    t.type(ssl, 'object', `${env}: TLS is on`)
    t.equal(ssl.ca, pem, `${env}: the CA bundle is the sslrootcert file`)
    t.not(ssl.rejectUnauthorized, false, `${env}: the certificate chain is checked`)
    t.equal(ssl.checkServerIdentity, undefined, `${env}: the host name is checked`)
  }
  t.equal(defaultOf('environments/aws', 'database_ca_bundle_path'), '/app/certs/aws-rds-global-bundle.pem', 'AWS: the bundle the image ships')
  t.match(text('environments/gcp'), /database_ca_file\s*=\s*"\$\{local\.database_ca_dir\}\/ca\.pem"/, 'GCP: the mounted Cloud SQL CA file')
})
