import { execFile } from 'node:child_process'
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { Ajv } from 'ajv'
import dotenv from 'dotenv'
import { projectRoot } from '../../lib/paths.js'
import { loadConfig } from '../../plugins/config.js'
import { readDockerfile, stageEnv } from './dockerfile.js'
import { commandOf, environmentOf, interpolate, interpolateDeep, readCompose, type ComposeService } from './compose.js'

/**
 * compose.yaml: valid against the Compose Specification schema, and the stack the deployment issue
 * asks for — app, PostgreSQL 14.12, Redis 7.2, a one-shot migration the app waits for, health
 * checks, limits, restart policies, named volumes, secrets only from .env. The .env that the
 * README's commands produce is interpolated into the app's environment exactly as compose would,
 * and must satisfy the server's own configuration schema.
 *
 * test/deploy/compose-spec.json is the Compose Specification's JSON schema (compose-spec/compose-spec,
 * schema/compose-spec.json, draft-07) as the npm package dclint 3.1.0 ships it (schemas/compose.schema.json).
 */

const compose = readCompose()
const services = compose.services
const { app, postgres, redis, migrate } = services
const execFileAsync = promisify(execFile)

t.test('compose.yaml is valid against the Compose Specification schema', async (t) => {
  const schema = JSON.parse(readFileSync(join(import.meta.dirname, 'compose-spec.json'), 'utf8')) as Record<string, unknown>
  const ajv = new Ajv({ strict: false, allErrors: true })
  const draft07 = JSON.parse(readFileSync(join(projectRoot, 'node_modules/ajv/dist/refs/json-schema-draft-07.json'), 'utf8')) as Record<string, unknown>
  // the schema names its meta-schema by https:// URL; Ajv registers draft-07 under http://
  ajv.addMetaSchema({ ...draft07, $id: String(schema.$schema) })
  const validate = ajv.compile(schema)

  t.ok(validate(compose), 'valid', { errors: validate.errors })
  t.notOk(validate({ services: { app: { image: 'x', restart: 5 } } }), 'the schema does reject an invalid file')
})

t.test('the four services: app, postgres, redis and the one-shot migrate; Vault only behind a profile', async (t) => {
  const always = Object.entries(services).filter(([, service]) => (service as { profiles?: string[] }).profiles === undefined).map(([name]) => name)
  t.same(always.sort(), ['app', 'migrate', 'postgres', 'redis'])
  t.same(Object.keys(services).sort(), ['app', 'migrate', 'postgres', 'redis', 'vault'])
  t.match(postgres.image, /^postgres:14\.12(-[a-z0-9.]+)?(@sha256:[0-9a-f]{64})?$/, 'PostgreSQL 14.12')
  t.match(redis.image, /^redis:7\.2(\.\d+)?(-[a-z0-9.]+)?(@sha256:[0-9a-f]{64})?$/, 'Redis 7.2')
  const build = typeof app.build === 'string' ? { context: app.build } : app.build
  t.equal(build?.context, '.', 'app is built from the repository')
  t.equal(build?.dockerfile ?? 'Dockerfile', 'Dockerfile')
  t.ok(app.image, 'app names its image')
  t.equal(migrate.image, app.image, 'migrate runs the image app builds')
  t.equal(migrate.build, undefined, 'migrate does not build it a second time (parallel builds of one tag collide)')
})

t.test('the optional Vault: the official image in dev mode behind the `vault` profile, its root token the app\'s VAULT_TOKEN', async (t) => {
  const vault = services.vault as ComposeService & { profiles?: string[] }
  t.same(vault.profiles, ['vault'])
  t.match(vault.image, /^hashicorp\/vault:\d+\.\d+\.\d+$/, 'the official image, a pinned release')
  t.same(commandOf(vault), ['server', '-dev'])
  t.equal(environmentOf(vault).VAULT_DEV_ROOT_TOKEN_ID, '${VAULT_TOKEN:-}', 'dev root token = the token the app uses, from .env')
  t.match([vault.healthcheck?.test ?? []].flat().join(' '), /vault status/)
  t.ok(vault.deploy?.resources?.limits?.memory !== undefined, 'a memory limit')
})

t.test('health checks on postgres, redis and app; app probes readiness (/health/ready) with curl', async (t) => {
  for (const name of ['postgres', 'redis', 'app']) {
    const healthcheck = services[name].healthcheck
    t.ok(healthcheck?.test && healthcheck.disable !== true, `${name} has a health check`)
    t.ok(healthcheck?.interval && healthcheck.timeout && healthcheck.retries, `${name}: interval, timeout, retries`)
  }
  const text = (service: ComposeService) => [service.healthcheck?.test ?? []].flat().join(' ')
  t.match(text(postgres), /pg_isready/)
  t.match(text(postgres), /-h 127\.0\.0\.1/, 'pg_isready over TCP (not fooled by the init-time socket-only server)')
  t.match(text(redis), /redis-cli ping/)
  // readiness overrides the image's liveness HEALTHCHECK: healthy means PostgreSQL, Redis and the schema are ready
  t.match(text(app), /curl -f\S* .*http:\/\/127\.0\.0\.1:3000\/health\/ready\b/, 'app: readiness, /health/ready')
  t.notMatch(text(app), /\/health\/live/, 'not liveness')
  // anything that waits for app waits for it to be ready
  for (const [name, service] of Object.entries(services)) {
    const dependsOn = service.depends_on ?? {}
    const onApp = Array.isArray(dependsOn) ? (dependsOn.includes('app') ? 'service_started' : undefined) : dependsOn.app?.condition
    if (onApp !== undefined) t.equal(onApp, 'service_healthy', `${name} waits for app's readiness (service_healthy)`)
  }
})

t.test('start order: app waits for healthy data stores and a successful migration', async (t) => {
  const conditions = (service: ComposeService) => {
    const dependsOn = service.depends_on ?? {}
    return Array.isArray(dependsOn) ? {} : Object.fromEntries(Object.entries(dependsOn).map(([name, entry]) => [name, entry.condition]))
  }
  t.same(conditions(app), { postgres: 'service_healthy', redis: 'service_healthy', migrate: 'service_completed_successfully' })
  t.same(conditions(migrate), { postgres: 'service_healthy' })
})

t.test('migrate runs the same node-pg-migrate command as `npm run db:migrate`', async (t) => {
  const packageJson = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  const script = packageJson.scripts['db:migrate'].split(/\s+/)
  const command = commandOf(migrate)
  t.match(command[0], /(^|\/)node-pg-migrate$/, 'the node-pg-migrate CLI')
  // the paths are absolute in the image; the options must be the same
  const normalise = (args: string[]) => args.slice(1).map((arg) => arg.replace(/^\/app\//, ''))
  t.same(normalise(command), normalise(script), 'the same arguments (up, migrations dir, tracking table, advisory lock, verbosity)')
  t.ok(command.includes('schema_migrations'), 'tracking table schema_migrations')
  t.equal(migrate.restart, 'no', 'a one-shot: never restarted')
})

t.test('restart policies, resource limits and named volumes', async (t) => {
  for (const name of ['app', 'postgres', 'redis']) {
    t.ok(['always', 'unless-stopped', 'on-failure'].includes(services[name].restart ?? ''), `${name} restarts (${services[name].restart})`)
  }
  for (const [name, service] of Object.entries(services)) {
    const limits = service.deploy?.resources?.limits
    t.ok(limits?.cpus !== undefined && limits.memory !== undefined, `${name} has CPU and memory limits`)
  }
  const mounts = (service: ComposeService) => (service.volumes ?? []).map((volume) => typeof volume === 'string'
    ? { source: volume.split(':')[0], target: volume.split(':')[1] }
    : { source: volume.source, target: volume.target })
  const declared = Object.keys(compose.volumes ?? {})
  const postgresData = mounts(postgres).find((mount) => mount.target === '/var/lib/postgresql/data')
  const redisData = mounts(redis).find((mount) => mount.target === '/data')
  t.ok(postgresData && declared.includes(postgresData.source ?? ''), 'PostgreSQL data on a named volume')
  t.ok(redisData && declared.includes(redisData.source ?? ''), 'Redis data on a named volume')
})

/** Every variable plugins/config.ts reads (the keys of its EnvSchema). */
function configVariables (): string[] {
  const source = readFileSync(join(projectRoot, 'plugins/config.ts'), 'utf8')
  const block = /const EnvSchema = Type\.Object\(\{([\s\S]*?)\n\}\)/.exec(source)?.[1] ?? ''
  return [...block.matchAll(/^\s+([A-Z][A-Z0-9_]+):/gm)].map((match) => match[1])
}

t.test('every configuration variable reaches the app container (or the image sets it)', async (t) => {
  const variables = configVariables()
  t.ok(variables.length >= 20, `read ${variables.length} variables from plugins/config.ts`)
  const runtime = readDockerfile(join(projectRoot, 'Dockerfile')).stages.at(-1)
  const fromImage = Object.keys(stageEnv(runtime!))
  const environment = environmentOf(app)
  for (const variable of variables) {
    t.ok(variable in environment || fromImage.includes(variable), `${variable}`)
  }
  const example = dotenv.parse(readFileSync(join(projectRoot, '.env.example')))
  for (const variable of variables.filter((name) => name !== 'HOST')) t.ok(variable in example, `.env.example lists ${variable}`)
})

t.test('secrets come only from .env: no password, token or key is written in compose.yaml', async (t) => {
  for (const [name, service] of Object.entries(services)) {
    for (const [key, value] of Object.entries(environmentOf(service))) {
      if (/PASSWORD|SECRET|_TOKEN$|PRIVATE_KEY|_AUTH$/.test(key)) {
        t.match(value, /^\$\{[A-Z_]+(:?\?[^}]*|:?-)?\}$/, `${name}.${key} is only an interpolation, with no default`)
      } else if (/_URL$/.test(key) && /^(postgres(ql)?|rediss?):/.test(value)) {
        t.match(value, /^[a-z]+:\/\/[^@/]*:\$\{[A-Z_]+:\?[^}]*\}@/, `${name}.${key}: its password is a required interpolation`)
      }
    }
  }
  const redisPassword = commandOf(redis)[commandOf(redis).indexOf('--requirepass') + 1]
  t.match(redisPassword, /^\$\{REDIS_PASSWORD:\?[^}]*\}$/, 'redis --requirepass comes from .env')
  const gitignore = readFileSync(join(projectRoot, '.gitignore'), 'utf8').split('\n').map((line) => line.trim())
  t.ok(gitignore.includes('.env'), '.env is git-ignored')
})

t.test('required variables: every one is in .env.example, and compose refuses to start without them', async (t) => {
  const text = readFileSync(join(projectRoot, 'compose.yaml'), 'utf8')
  const required = [...new Set([...text.matchAll(/\$\{([A-Z_]+):\?/g)].map((match) => match[1]))]
  t.ok(required.length > 0, `required: ${required.join(', ')}`)
  const example = dotenv.parse(readFileSync(join(projectRoot, '.env.example')))
  for (const variable of required) t.ok(variable in example, `.env.example has ${variable}`)
  t.throws(() => interpolateDeep(app, example), /required variable/, 'the bare example is refused with a message')
})

/** The README's .env commands, run as written in an empty directory holding .env.example. */
async function envFromReadme (t: Test): Promise<Record<string, string>> {
  const readme = readFileSync(join(projectRoot, 'README.md'), 'utf8')
  const block = /```bash\n(cp \.env\.example \.env\n[\s\S]*?)```/.exec(readme)?.[1]
  if (block === undefined) throw new Error('README has no ```bash block starting with `cp .env.example .env`')
  const directory = await mkdtemp(join(tmpdir(), 'agentidp-env-'))
  t.teardown(() => rm(directory, { recursive: true, force: true }))
  await copyFile(join(projectRoot, '.env.example'), join(directory, '.env.example'))
  await execFileAsync('bash', ['-euo', 'pipefail', '-c', block], { cwd: directory, timeout: 60_000 })
  return dotenv.parse(await readFile(join(directory, '.env')))
}

t.test("the .env the README's commands produce starts the stack: the app's environment passes the server's configuration", async (t) => {
  const env = await envFromReadme(t)
  const appEnvironment = interpolateDeep(environmentOf(app), env)
  const config = loadConfig(appEnvironment)

  t.equal(config.NODE_ENV, 'production')
  t.equal(config.PORT, 3000)
  t.match(config.DATABASE_URL, /^postgresql:\/\/agentidp:[0-9a-f]{48}@postgres:5432\/agentidp$/, 'DATABASE_URL points at the postgres service')
  t.match(appEnvironment.REDIS_URL, /^redis:\/\/:[0-9a-f]{48}@redis:6379$/, 'REDIS_URL points at the redis service, with its password')
  t.ok(config.JWT_PRIVATE_KEY.startsWith('-----BEGIN PRIVATE KEY-----\n'), 'the one-line PEM becomes a PEM')
  t.same(config.JWT_ADDITIONAL_PUBLIC_KEYS, [])
  t.equal(config.ISSUER_URL, 'http://localhost:3000')

  const migrateEnvironment = interpolateDeep(environmentOf(migrate), env)
  t.equal(migrateEnvironment.DATABASE_URL, config.DATABASE_URL, 'migrate and app use the same database')
  const redisCommand = interpolateDeep(commandOf(redis), env)
  t.ok(redisCommand.includes(env.REDIS_PASSWORD), 'redis requires the password the app uses')
  t.equal(interpolate(environmentOf(redis).REDISCLI_AUTH, env), env.REDIS_PASSWORD, 'the redis health check authenticates')
  t.equal(interpolate(String(app.ports?.[0]), env), '3000:3000', 'published on APP_PORT')
})
