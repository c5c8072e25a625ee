import t, { type Test } from 'tap'
import pg from 'pg'
import { BASE_DATABASE_URL, createSchema, schemaUrl, testEnv, testKeys } from './helper.js'
import {
  baseEnv, compiledServer, ensureBuild, isListening, sparePort, startProcess, waitFor, type RunningProcess
} from './support/private-services.js'

/**
 * `node dist/server.js` as a real process, with nothing but the variables given here (the
 * compiled output of `npm run build`, rebuilt first when stale: operators run dist/, not the
 * sources). Configuration failures must be one line on stderr, before anything binds the port.
 */
await ensureBuild()
const { databaseUrl } = await createSchema(t)

function productionEnv (port: number, overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    ...baseEnv(),
    ...testEnv(databaseUrl),
    NODE_ENV: 'production',
    HOST: '127.0.0.1',
    PORT: String(port),
    ...overrides
  }
}

/** Runs the server until it exits on its own, watching the port the whole time. */
async function runUntilExit (t: Test, env: Record<string, string | undefined>, port: number) {
  const server = startProcess(t, process.execPath, [compiledServer], { env })
  let bound = false
  let running = true
  const exited = server.exited.then((result) => { running = false; return result })
  while (running) {
    if (await isListening(port)) bound = true
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 20))])
  }
  const { code } = await exited
  return { code, bound: bound || await isListening(port), stdout: server.stdout, stderr: server.stderr }
}

async function health (port: number): Promise<{ status: number, body: unknown } | null> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(2000) })
    return { status: response.status, body: await response.json() }
  } catch {
    return null
  }
}

async function startHealthy (t: Test, env: Record<string, string | undefined>, port: number): Promise<RunningProcess> {
  const server = startProcess(t, process.execPath, [compiledServer], { env })
  await waitFor(`the server on port ${port}`, async () => {
    if (server.child.exitCode !== null) throw new Error(`exited ${server.child.exitCode}: ${server.stderr}`)
    return (await health(port)) !== null
  }, 30_000)
  return server
}

t.test('without JWT_PRIVATE_KEY the server exits non-zero with one stderr line naming it, and never binds the port', async (t) => {
  const port = await sparePort()

  const result = await runUntilExit(t, productionEnv(port, { JWT_PRIVATE_KEY: undefined }), port)

  t.not(result.code, 0, 'exits non-zero')
  const lines = result.stderr.trim().split('\n')
  t.equal(lines.length, 1, 'one line on stderr', { stderr: result.stderr })
  t.match(lines[0], /JWT_PRIVATE_KEY/)
  t.notOk(result.bound, 'the port was never bound')
})

t.test('a malformed JWT_PRIVATE_KEY exits non-zero with one stderr line naming it, never echoing it, never binding', async (t) => {
  const port = await sparePort()
  const malformed = '-----BEGIN PRIVATE KEY-----\\nbm90LWEta2V5LXNlbnRpbmVs\\n-----END PRIVATE KEY-----'

  const result = await runUntilExit(t, productionEnv(port, { JWT_PRIVATE_KEY: malformed }), port)

  t.not(result.code, 0, 'exits non-zero')
  const lines = result.stderr.trim().split('\n')
  t.equal(lines.length, 1, 'one line on stderr', { stderr: result.stderr })
  t.match(lines[0], /JWT_PRIVATE_KEY/)
  t.notOk((result.stderr + result.stdout).includes('bm90LWEta2V5LXNlbnRpbmVs'), 'the value is not printed')
  t.notOk(result.bound, 'the port was never bound')
})

t.test('with every variable set the server listens, /health is 200, stdout is pino JSON and SIGTERM exits 0', async (t) => {
  const port = await sparePort()
  const server = await startHealthy(t, productionEnv(port), port)

  t.same(await health(port), { status: 200, body: { status: 'ok', postgres: 'connected', redis: 'connected' } })
  server.child.kill('SIGTERM')
  const { code, signal } = await server.exited

  t.equal(code, 0, 'SIGTERM exits 0', { stderr: server.stderr, signal })
  t.notOk(await isListening(port), 'the port is released')
  const lines = server.stdout.split('\n').filter(Boolean)
  t.ok(lines.length > 0, 'it logged')
  t.ok(lines.every((line) => { try { JSON.parse(line); return true } catch { return false } }), 'every stdout line is JSON')
  t.notOk(server.stdout.includes(testKeys.privateKey.split('\n')[1]), 'the private key is never logged')
})

t.test('PEMs given on one line with literal \\n sequences are accepted and the server becomes healthy', async (t) => {
  const port = await sparePort()
  const oneLine = (pem: string) => pem.trim().replace(/\n/g, '\\n')
  const env = productionEnv(port, { JWT_PRIVATE_KEY: oneLine(testKeys.privateKey), JWT_PUBLIC_KEY: oneLine(testKeys.publicKey) })
  t.notOk(env.JWT_PRIVATE_KEY?.includes('\n'), 'the variable holds no real newline')

  const server = await startHealthy(t, env, port)

  t.equal((await health(port))?.status, 200)
  server.child.kill('SIGTERM')
  t.equal((await server.exited).code, 0)
})

t.test('every missing or malformed variable is reported in one run, one line each, before any port is bound', async (t) => {
  const port = await sparePort()

  const result = await runUntilExit(t, productionEnv(port, { JWT_PRIVATE_KEY: undefined, ISSUER_URL: undefined, TOKEN_TTL_SECONDS: '5', REDIS_URL: 'http://not-redis' }), port)

  t.not(result.code, 0)
  const lines = result.stderr.trim().split('\n')
  t.same(lines.map((line) => /^configuration error: ([A-Z_]+) /.exec(line)?.[1]).sort(),
    ['ISSUER_URL', 'JWT_PRIVATE_KEY', 'REDIS_URL', 'TOKEN_TTL_SECONDS'], 'each problem named once', { stderr: result.stderr })
  t.notOk(result.bound)
})

t.test('a database that was never migrated: exit non-zero with one line naming the pending migrations and the command', async (t) => {
  const port = await sparePort()
  const { schema } = await createSchema(t)
  const empty = `${schema}_empty`
  const db = new pg.Client({ connectionString: BASE_DATABASE_URL })
  await db.connect()
  await db.query(`CREATE SCHEMA ${empty}`)
  t.teardown(async () => { await db.query(`DROP SCHEMA ${empty} CASCADE`); await db.end() })

  const result = await runUntilExit(t, productionEnv(port, { DATABASE_URL: schemaUrl(empty) }), port)

  t.not(result.code, 0)
  const lines = result.stderr.trim().split('\n')
  t.equal(lines.length, 1, 'one line', { stderr: result.stderr })
  t.match(lines[0], /^startup refused: the database schema is behind: 14 pending migrations \(001_create_agents, .*014_audit_newest_index\); apply them with `npm run db:migrate`/)
  t.notOk(result.bound, 'never listened')
})

t.test('a database missing only the newest migration is refused the same way, naming just that one', async (t) => {
  const port = await sparePort()
  const { schema } = await createSchema(t)
  const db = new pg.Client({ connectionString: BASE_DATABASE_URL })
  await db.connect()
  await db.query(`DELETE FROM ${schema}.schema_migrations WHERE name = '014_audit_newest_index'`)
  await db.end()

  const result = await runUntilExit(t, productionEnv(port, { DATABASE_URL: schemaUrl(schema) }), port)

  t.not(result.code, 0)
  t.match(result.stderr.trim(), /^startup refused: the database schema is behind: 1 pending migration \(014_audit_newest_index\)/)
})

t.test('an unreachable database or Redis at start is said in words, naming host and port, never the password', async (t) => {
  const port = await sparePort()
  const closed = await sparePort()

  const noDatabase = await runUntilExit(t, productionEnv(port, { DATABASE_URL: `postgres://agentidp:s3cret-pw@127.0.0.1:${closed}/agentidp` }), port)
  t.not(noDatabase.code, 0)
  t.match(noDatabase.stderr.trim(), new RegExp(`^startup refused: cannot use the database at 127\\.0\\.0\\.1:${closed}/agentidp \\(ECONNREFUSED\\); check DATABASE_URL`))
  t.notOk(noDatabase.stderr.includes('s3cret-pw'), 'the password is not printed')

  const noRedis = await runUntilExit(t, productionEnv(port, { REDIS_URL: `redis://127.0.0.1:${closed}`, LOG_LEVEL: 'error' }), port)
  t.not(noRedis.code, 0)
  t.match(noRedis.stderr.trim(), new RegExp(`^startup refused: cannot reach redis at 127\\.0\\.0\\.1:${closed} \\(ECONNREFUSED\\); check REDIS_URL`))
  t.notOk(noRedis.bound, 'never listened')
})
