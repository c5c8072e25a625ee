import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { projectRoot } from '../../lib/paths.js'
import { loadTree, parseModule } from './hcl.js'
import { checkPolicy, resolve, RULES, type Tree } from './policy.js'

/**
 * The safe defaults of terraform/ as checkov-style rules (test/deploy/policy.ts): first the tree as
 * committed, which must comply with every rule, then a fixture tree that breaks each rule, so that a
 * rule which stopped finding anything would fail here rather than pass silently.
 */

const root = join(projectRoot, 'terraform')
const tree = await loadTree(root)

t.test('terraform/ complies with every rule', async (t) => {
  const findings = checkPolicy(tree)
  for (const rule of RULES) t.same(findings[rule.id], [], `${rule.id}: ${rule.title}`)
})

// A caller passing insecure values into a module with insecure defaults and literals.
const fixtureModule = `
variable "deletion_protection" {
  type    = bool
  default = false
}
variable "retention" {
  type    = number
  default = 1
}
variable "open" {
  type    = list(string)
  default = ["0.0.0.0/0"]
}
variable "probe" {
  type    = string
  default = "/health"
}
variable "force_ssl" {
  type    = bool
  default = false
}
locals {
  app_container = {
    healthCheck = { command = ["CMD-SHELL", "curl -f http://127.0.0.1:3000/health"] }
  }
}
resource "aws_security_group" "app" {
  ingress {
    from_port   = 22
    to_port     = 22
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}
resource "aws_security_group" "alb" {}
resource "aws_vpc_security_group_ingress_rule" "db" {
  for_each          = toset(var.open)
  security_group_id = aws_security_group.app.id
  cidr_ipv4         = each.value
  from_port         = 5432
  to_port           = 5432
}
resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  security_group_id = aws_security_group.alb.id
  cidr_ipv4         = "0.0.0.0/0"
  from_port         = 443
  to_port           = 443
}
resource "google_compute_firewall" "ssh" {
  source_ranges = ["0.0.0.0/0"]
}
resource "aws_db_parameter_group" "this" {
  parameter {
    name  = "rds.force_ssl"
    value = var.force_ssl ? "1" : "0"
  }
}
resource "aws_db_instance" "this" {
  storage_encrypted       = false
  publicly_accessible     = true
  multi_az                = false
  deletion_protection     = var.deletion_protection
  backup_retention_period = var.retention
  skip_final_snapshot     = true
}
resource "google_sql_database_instance" "this" {
  deletion_protection = var.deletion_protection
  settings {
    ip_configuration {
      ipv4_enabled = true
      ssl_mode     = "ALLOW_UNENCRYPTED_AND_ENCRYPTED"
    }
    backup_configuration {
      enabled = false
    }
  }
}
resource "aws_elasticache_replication_group" "this" {
  transit_encryption_enabled = false
  at_rest_encryption_enabled = false
}
resource "google_redis_instance" "this" {
  transit_encryption_mode = "DISABLED"
  auth_enabled            = false
}
resource "aws_subnet" "public" {
  map_public_ip_on_launch = true
}
resource "aws_ecs_service" "this" {
  network_configuration {
    assign_public_ip = true
  }
  deployment_circuit_breaker {
    enable   = true
    rollback = false
  }
}
resource "aws_lb_target_group" "this" {
  health_check {
    path = var.probe
  }
}
resource "google_cloud_run_v2_service" "this" {
  ingress = "INGRESS_TRAFFIC_ALL"
  template {
    containers {
      startup_probe {
        http_get {
          path = "/health"
        }
      }
    }
  }
}
resource "aws_lb" "this" {
  load_balancer_type         = "application"
  drop_invalid_header_fields = false
  xff_header_processing_mode = "preserve"
}
resource "aws_lb_listener" "https" {
  protocol   = "HTTPS"
  ssl_policy = "ELBSecurityPolicy-2016-08"
  default_action {
    type = "forward"
  }
}
resource "aws_lb_listener" "http" {
  protocol = "HTTP"
  default_action {
    type = "forward"
  }
}
resource "aws_lb_listener_rule" "api" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 1
  action {
    type = "forward"
  }
}
resource "aws_lb_listener_rule" "metrics" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 5
  action {
    type = "fixed-response"
    fixed_response {
      status_code = "404"
    }
  }
  condition {
    path_pattern {
      values = ["/metrics"]
    }
  }
}
resource "google_compute_url_map" "https" {
  default_service = "backend"
}
resource "aws_secretsmanager_secret_version" "database_url" {
  secret_string = "postgresql://app:\${random_password.db.result}@db:5432/app?sslmode=no-verify"
}
`
const fixtureEnvironment = `
variable "extra_environment" {
  type    = map(string)
  default = {}
}
module "app" {
  source              = "../modules/app"
  deletion_protection = false
}
module "agentidp" {
  source = "../modules/agentidp/x"
  environment = merge(var.extra_environment, {
    ISSUER_URL    = "https://idp.example.com"
    METRICS_TOKEN = "set-in-plain-sight"
  })
  secrets = {
    DATABASE_URL = "arn"
  }
}
`

t.test('each rule finds its violation in a fixture tree', async (t) => {
  const fixture: Tree = new Map([
    ['modules/app', await parseModule('modules/app', [{ name: 'main.tf', text: fixtureModule }])],
    ['env', await parseModule('env', [{ name: 'main.tf', text: fixtureEnvironment }])],
    ['modules/agentidp/x', await parseModule('modules/agentidp/x', [{ name: 'main.tf', text: 'variable "environment" {}\nvariable "secrets" {}\n' }])]
  ])
  const findings = checkPolicy(fixture)
  const expected: Record<string, RegExp[]> = {
    'no-world-ingress': [/aws_security_group\.app: open to the internet on 22-22/, /ingress_rule\.db: open to the internet on 5432/, /google_compute_firewall\.ssh/],
    'rds-hardened': [/storage_encrypted/, /publicly_accessible/, /multi_az/, /deletion_protection is false/, /backup_retention_period is 1/, /skip_final_snapshot/],
    'cloud-sql-hardened': [/ipv4_enabled/, /ssl_mode/, /server_ca_mode is null/, /backups is false/, /point_in_time_recovery_enabled/, /deletion_protection/],
    'redis-encrypted': [/transit_encryption_enabled/, /at_rest_encryption_enabled/, /no auth_token/, /transit_encryption_mode/, /auth_enabled/],
    'no-public-ip': [/assign_public_ip/, /map_public_ip_on_launch/, /ingress is "INGRESS_TRAFFIC_ALL"/],
    'probes-split': [/ECS container health check does not probe \/health\/live/, /health_check\.path is "\/health"/, /startup_probe path is "\/health"/, /liveness_probe path is null/],
    'ecs-circuit-breaker': [/rollback is false/],
    'metrics-not-public': [/another rule is evaluated before the one refusing \/metrics/, /url_map\.https: no route rule refuses \/metrics/],
    'metrics-token-from-secrets': [/module "agentidp" gets no METRICS_TOKEN/],
    'database-tls-verify-full': [/sslmode=no-verify/, /mentions no-verify/, /does not verify the server/, /rds\.force_ssl is false/],
    'secrets-not-in-plain-env': [/sets METRICS_TOKEN as a plain environment variable/, /extra_environment does not refuse secret names/],
    'alb-hardened': [/drop_invalid_header_fields/, /xff_header_processing_mode is "preserve"/, /enable_xff_client_port is null/, /ssl_policy is "ELBSecurityPolicy-2016-08"/, /aws_lb_listener\.http: a plain-HTTP listener/]
  }
  t.same(Object.keys(expected).sort(), RULES.map((rule) => rule.id).sort(), 'every rule has a fixture')
  for (const [id, patterns] of Object.entries(expected)) {
    for (const pattern of patterns) t.ok(findings[id].some((finding) => pattern.test(finding)), `${id} finds ${pattern}`, { findings: findings[id] })
  }
  t.notOk(findings['no-world-ingress'].some((finding) => finding.includes('alb_https')), 'the load balancer on 443 may be open to the world')
  t.notOk(findings['secrets-not-in-plain-env'].some((finding) => finding.includes('ISSUER_URL')), 'non-secrets may be plain')
})

t.test('values are resolved through the callers that pass them, else from defaults', async (t) => {
  const child = await parseModule('modules/child', [{ name: 'main.tf', text: 'variable "x" {\n  default = 1\n}\nvariable "y" {\n  default = 2\n}\n' }])
  const parent = await parseModule('env', [{ name: 'main.tf', text: 'variable "z" {\n  default = 3\n}\nmodule "a" {\n  source = "../modules/child"\n  x      = 10\n}\nmodule "b" {\n  source = "../modules/child"\n  x      = var.z\n}\n' }])
  const fixture: Tree = new Map([['modules/child', child], ['env', parent]])
  t.same(resolve(fixture, child, '${var.x}').sort(), [10, 3].sort(), 'each caller: a literal, or its own default')
  t.same(resolve(fixture, child, '${var.y}'), [2, 2], 'not passed: the default, once per caller')
  t.same(resolve(fixture, child, 'literal'), ['literal'])
})

t.test('provider lock files: committed per environment, or the command that makes them is documented', async (t) => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  for (const env of ['aws', 'gcp']) {
    const lock = join(root, 'environments', env, '.terraform.lock.hcl')
    if (existsSync(lock)) {
      const text = readFileSync(lock, 'utf8')
      const required = JSON.stringify(tree.get(`environments/${env}`)?.json.terraform ?? null)
      for (const provider of required.matchAll(/"source":"([\w-]+\/[\w-]+)"/g)) {
        t.match(text, new RegExp(`provider "registry\\.terraform\\.io/${provider[1]}"[\\s\\S]*?hashes = \\[`), `${env}: ${provider[1]} is locked with hashes`)
      }
    } else {
      t.match(readme, /terraform providers lock(?: \\\n\s*| )-platform=linux_amd64/, `${env}: no lock file yet, and terraform/README.md gives the command that writes it`)
    }
  }
})
