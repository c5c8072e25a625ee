import { existsSync, readFileSync } from 'node:fs'
import { join, posix } from 'node:path'
import t from 'tap'
import { Ajv } from 'ajv'
import dotenv from 'dotenv'
import { parse } from 'yaml'
import { projectRoot } from '../../lib/paths.js'
import { environmentOf, interpolateDeep, readCompose, type ComposeFile, type ComposeService } from '../deploy/compose.js'
import { MONITORING_DIR } from './support.js'

/**
 * compose.monitoring.yaml: a valid Compose file, an overlay that fits compose.yaml (the services and
 * network it names exist there; Prometheus scrapes the app where it listens), the pinned images,
 * Grafana's admin password and the metrics token only from .env, every mounted file present.
 */

const overlay = parse(readFileSync(join(projectRoot, 'compose.monitoring.yaml'), 'utf8')) as ComposeFile & { secrets?: Record<string, { environment?: string }> }
const base = readCompose()
const { prometheus, grafana } = overlay.services
const prometheusConfig = parse(readFileSync(join(MONITORING_DIR, 'prometheus.yml'), 'utf8')) as {
  rule_files: string[]
  scrape_configs: Array<{ job_name: string, metrics_path?: string, authorization?: { type?: string, credentials_file?: string }, static_configs: Array<{ targets: string[] }> }>
}

t.test('compose.monitoring.yaml is valid against the Compose Specification schema', async (t) => {
  const schema = JSON.parse(readFileSync(join(projectRoot, 'test/deploy/compose-spec.json'), 'utf8')) as Record<string, unknown>
  const ajv = new Ajv({ strict: false, allErrors: true })
  const draft07 = JSON.parse(readFileSync(join(projectRoot, 'node_modules/ajv/dist/refs/json-schema-draft-07.json'), 'utf8')) as Record<string, unknown>
  ajv.addMetaSchema({ ...draft07, $id: String(schema.$schema) })
  const validate = ajv.compile(schema)
  t.ok(validate(overlay), 'valid', { errors: validate.errors })
})

t.test('an overlay of compose.yaml: its app, its backend network, the pinned images', async (t) => {
  t.same(Object.keys(overlay.services).sort(), ['app', 'grafana', 'prometheus'])
  t.ok(base.services.app !== undefined, 'compose.yaml has the app it extends')
  t.same(Object.keys(overlay.services.app).sort(), ['environment'], 'it only adds to the app\'s environment')
  t.equal(prometheus.image, 'prom/prometheus:v2.53.0')
  t.equal(grafana.image, 'grafana/grafana:11.2.0')
  const baseNetworks = Object.keys((base as { networks?: Record<string, unknown> }).networks ?? {})
  for (const service of [prometheus, grafana]) {
    t.ok((service.networks as string[]).every((network) => baseNetworks.includes(network)), `on networks compose.yaml declares: ${String(service.networks)}`)
  }
  for (const [name, service] of Object.entries({ prometheus, grafana })) {
    t.ok(['always', 'unless-stopped'].includes(service.restart ?? ''), `${name} restarts`)
    t.ok(service.healthcheck?.test !== undefined, `${name} has a health check`)
    t.ok(service.deploy?.resources?.limits?.memory !== undefined, `${name} has limits`)
    t.ok((service.ports ?? []).every((port) => String(port).startsWith('127.0.0.1:')), `${name} is published on 127.0.0.1 only`)
  }
})

t.test('Prometheus scrapes the app service where it listens, with the metrics token compose hands it', async (t) => {
  const job = prometheusConfig.scrape_configs.find((config) => config.job_name === 'agentidp')
  t.ok(job, 'a job named agentidp (the rules select job="agentidp")')
  const [host, port] = (job?.static_configs[0].targets[0] ?? '').split(':')
  t.ok(base.services[host] !== undefined, `the target ${host} is a service of compose.yaml`)
  t.equal(port, String(environmentOf(base.services[host]).PORT), 'on the port the app listens on')
  t.equal(job?.metrics_path, '/metrics')
  t.equal(job?.authorization?.type, 'Bearer')

  const secrets = (prometheus.secrets ?? []) as Array<{ source: string, target: string }>
  const configTarget = (prometheus.volumes as string[]).map((volume) => volume.split(':')).find(([source]) => source === './ops/monitoring/prometheus.yml')?.[1]
  t.ok(configTarget, 'prometheus.yml is mounted')
  const tokenFile = posix.join(posix.dirname(configTarget ?? ''), job?.authorization?.credentials_file ?? '')
  t.ok(secrets.some((secret) => secret.target === tokenFile && overlay.secrets?.[secret.source]?.environment === 'METRICS_TOKEN'),
    `the METRICS_TOKEN secret is mounted at ${tokenFile}, where prometheus.yml reads it`)
  for (const rules of prometheusConfig.rule_files) {
    t.ok((prometheus.volumes as string[]).some((volume) => volume.endsWith(`:${posix.join(posix.dirname(configTarget ?? ''), rules)}:ro`)), `${rules} is mounted beside it`)
  }
})

t.test('secrets only from .env, required, and listed in .env.example', async (t) => {
  t.equal(environmentOf(overlay.services.app as ComposeService).METRICS_TOKEN, '${METRICS_TOKEN:?set METRICS_TOKEN in .env (README, Operations / Monitoring)}')
  t.match(environmentOf(grafana).GF_SECURITY_ADMIN_PASSWORD, /^\$\{GF_ADMIN_PASSWORD:\?[^}]+\}$/, 'Grafana\'s admin password from GF_ADMIN_PASSWORD')
  const example = dotenv.parse(readFileSync(join(projectRoot, '.env.example')))
  const text = readFileSync(join(projectRoot, 'compose.monitoring.yaml'), 'utf8')
  const variables = [...new Set([...text.matchAll(/\$\{([A-Z_]+)[:?}-]/g)].map((match) => match[1]))]
  for (const variable of variables) t.ok(variable in example, `.env.example lists ${variable}`)
  t.throws(() => interpolateDeep(grafana, { ...example, GF_ADMIN_PASSWORD: '' }), /required variable GF_ADMIN_PASSWORD/, 'refused without a password')
  t.throws(() => interpolateDeep(overlay.services.app, { ...example, METRICS_TOKEN: '' }), /required variable METRICS_TOKEN/, 'refused without a metrics token')
})

t.test('every file the overlay mounts exists', async (t) => {
  for (const service of [prometheus, grafana]) {
    for (const volume of (service.volumes ?? []) as string[]) {
      const source = volume.split(':')[0]
      if (!source.startsWith('./')) continue
      t.ok(existsSync(join(projectRoot, source)), source)
    }
  }
})
