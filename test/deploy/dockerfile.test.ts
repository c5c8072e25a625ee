import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { projectRoot } from '../../lib/paths.js'
import { compareVersions, copyPaths, readDockerfile, stageEnv, workdirAt, type Instruction, type Stage } from './dockerfile.js'

/**
 * The Dockerfile, parsed and held to the deployment issue: two stages on node 20 (>= 20.19)
 * bookworm-slim, TypeScript compiled in the first, production dependencies only in the second,
 * which copies dist/, migrations/ and policies/, runs as nodeapp (UID 1001), exposes 3000, honours
 * PORT and checks /health with curl. runtime-image.test.ts then assembles and runs that final stage.
 */

const dockerfile = readDockerfile(join(projectRoot, 'Dockerfile'))
const packageJson = JSON.parse(readFileSync(join(projectRoot, 'package.json'), 'utf8')) as { engines: { node: string } }
const [build, runtime] = dockerfile.stages

const runs = (stage: Stage) => stage.instructions.filter((entry) => entry.keyword === 'RUN')
const copies = (stage: Stage) => stage.instructions.filter((entry) => entry.keyword === 'COPY' || entry.keyword === 'ADD')
const last = (stage: Stage, keyword: string): Instruction | undefined => stage.instructions.filter((entry) => entry.keyword === keyword).at(-1)
const NODE_IMAGE = /^node:(\d+(?:\.\d+){1,2})-bookworm-slim(@sha256:[0-9a-f]{64})?$/

t.test('two stages, the first named and used by the second', async (t) => {
  t.equal(dockerfile.stages.length, 2, 'exactly two FROM stages')
  t.ok(build.name, 'the build stage is named')
  t.ok(copies(runtime).some((copy) => copy.flags.from === build.name), 'the final stage copies from the build stage')
})

t.test('both stages run node 20 >= 20.19 on bookworm-slim, and the version satisfies engines.node', async (t) => {
  const minimum = /^>=\s*(\d+\.\d+\.\d+)$/.exec(packageJson.engines.node)?.[1]
  t.ok(minimum, `engines.node is a ">=x.y.z" range (${packageJson.engines.node})`)
  for (const stage of dockerfile.stages) {
    const match = NODE_IMAGE.exec(stage.image)
    t.ok(match, `stage ${stage.name ?? stage.index} uses node:<version>-bookworm-slim (${stage.image})`)
    if (match === null || minimum === undefined) continue
    const version = match[1]
    t.equal(version.split('.')[0], '20', 'Node 20')
    t.ok(compareVersions(version, '20.19') >= 0, `${version} >= 20.19`)
    t.ok(compareVersions(version, minimum) >= 0, `${version} satisfies engines.node ${packageJson.engines.node}`)
  }
  t.equal(build.image, runtime.image, 'the same base image in both stages')
  t.ok(dockerfile.comments.some((comment) => /@sha256:/.test(comment)), 'a comment shows how to pin the image by digest')
})

t.test('the build stage installs every dependency and compiles the same sources as `npm run build`', async (t) => {
  const commands = runs(build).map((run) => run.args)
  t.ok(commands.some((command) => /\bnpm ci\b/.test(command) && !/--omit=dev|--production|--only=prod/.test(command)),
    'npm ci with dev dependencies (TypeScript)')
  t.ok(commands.some((command) => /\bnpm run build\b/.test(command)), 'npm run build')

  const tsconfig = JSON.parse(readFileSync(join(projectRoot, 'tsconfig.build.json'), 'utf8')) as { include: string[] }
  const copied = copies(build).flatMap((copy) => copyPaths(copy).sources).map((source) => source.replace(/^\.\//, '').replace(/\/$/, ''))
  for (const entry of tsconfig.include) t.ok(copied.includes(entry), `tsconfig.build.json's "${entry}" is copied into the build stage`)
  for (const file of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json']) {
    t.ok(copied.includes(file), `${file} is copied into the build stage`)
  }
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
  t.notOk(copied.some((copy) => copy.from === build.name && copy.sources.some((source) => /node_modules/.test(source))),
    'node_modules is not copied from the build stage (it holds dev dependencies)')
  const fromContext = copied.filter((copy) => copy.from === undefined).flatMap((copy) => copy.sources.map((source) => source.replace(/^\.\//, '').replace(/\/$/, '')))
  for (const entry of ['migrations', 'policies', 'package.json', 'package-lock.json']) t.ok(fromContext.includes(entry), `${entry} is copied`)
  t.notOk(fromContext.some((source) => source === '.' || source.includes('.env')), 'neither the whole context nor .env is copied')
})

t.test('the final stage installs curl, creates nodeapp with UID 1001 and runs as it', async (t) => {
  const commands = runs(runtime).map((run) => run.args).join('\n')
  t.match(commands, /apt-get install[^\n]*\bcurl\b/, 'curl is installed (HEALTHCHECK)')
  t.match(commands, /rm -rf \/var\/lib\/apt\/lists/, 'apt lists are removed in the same layer')
  t.match(commands, /useradd\b[^\n]*--uid 1001\b[^\n]*\bnodeapp\b/, 'useradd creates nodeapp with UID 1001')
  t.match(commands, /groupadd\b[^\n]*--gid 1001\b[^\n]*\bnodeapp\b/, 'groupadd creates the nodeapp group with GID 1001')

  const user = last(runtime, 'USER')
  t.ok(user, 'USER is set')
  t.match(user?.args ?? '', /^(1001|nodeapp)(:(1001|nodeapp))?$/, 'the final USER is nodeapp / 1001')
  const userAt = runtime.instructions.indexOf(user as Instruction)
  t.notOk(runtime.instructions.slice(userAt + 1).some((entry) => ['RUN', 'COPY', 'ADD', 'USER'].includes(entry.keyword)),
    'nothing is installed, copied or switched after USER: the code stays root-owned and read-only to the service')
})

t.test('EXPOSE 3000, PORT honoured, HEALTHCHECK with curl on /health, exec-form CMD', async (t) => {
  const env = stageEnv(runtime)
  t.ok(runtime.instructions.some((entry) => entry.keyword === 'EXPOSE' && entry.args.split(/\s+/).includes('3000')), 'EXPOSE 3000')
  t.equal(env.PORT, '3000', 'ENV PORT=3000 (the server reads PORT)')
  t.equal(env.NODE_ENV, 'production', 'ENV NODE_ENV=production')

  const healthcheck = last(runtime, 'HEALTHCHECK')
  t.ok(healthcheck, 'HEALTHCHECK is declared')
  const command = healthcheck?.args ?? ''
  t.match(command, /^CMD\s/, 'HEALTHCHECK CMD …')
  t.match(command, /\bcurl\b[^|]*-f/, 'curl -f: an HTTP error fails the check')
  t.match(command, /http:\/\/(127\.0\.0\.1|localhost):\$\{?PORT\}?\/health\b/, 'probes /health on $PORT')
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

t.test('.dockerignore keeps secrets, local data, installed and built output and tests out, and nothing the build needs', async (t) => {
  for (const path of ['.env', '.env.local', '.data', '.data/pg', 'node_modules', 'dist', 'test', 'test/deploy/runtime-image.test.ts', '.git', 'jwt-private.pem']) {
    t.ok(ignored(path), `${path} is not sent to the builder`)
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
