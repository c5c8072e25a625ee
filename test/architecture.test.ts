import { execFile } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { projectRoot } from '../lib/paths.js'

/**
 * The layers of ARCHITECTURE.md hold: the dependency checker (dependency-cruiser with
 * .dependency-cruiser.cjs) finds no upward or sideways import in the tree and does find each kind
 * in a tree made to break them; SQL text lives only in repositories/ (and migrations/).
 */
const run = promisify(execFile)
const depcruise = join(projectRoot, 'node_modules', '.bin', 'depcruise')
const config = join(projectRoot, '.dependency-cruiser.cjs')
const PRODUCT = ['app.ts', 'server.ts', 'cli', 'lib', 'plugins', 'routes', 'services', 'repositories', 'schemas']

async function cruise (cwd: string, paths: string[]): Promise<{ code: number, output: string }> {
  try {
    const { stdout } = await run(depcruise, ['--config', config, '--output-type', 'err', ...paths], { cwd })
    return { code: 0, output: stdout }
  } catch (error) {
    const failed = error as { code?: number, stdout?: string, stderr?: string }
    return { code: failed.code ?? 1, output: `${failed.stdout ?? ''}${failed.stderr ?? ''}` }
  }
}

t.test('the product tree has no upward, sideways or circular import', async (t) => {
  const result = await cruise(projectRoot, PRODUCT)
  t.equal(result.code, 0, result.output)
  t.match(result.output, /no dependency violations found/)
})

t.test('the checker fails on each kind of forbidden import', async (t) => {
  const tree = await mkdtemp(join(tmpdir(), 'agentidp-layers-'))
  t.teardown(() => rm(tree, { recursive: true, force: true }))
  const files: Record<string, string> = {
    'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext' } }),
    'plugins/config.ts': 'export const config = 1\n',
    'lib/helper.ts': "import { config } from '../plugins/config.js'\nexport const helper = config\n",
    'routes/agents/index.ts': 'export const agents = 1\n',
    'routes/audit/index.ts': "import { agents } from '../agents/index.js'\nexport const audit = agents\n",
    'services/thing.ts': "import { agents } from '../routes/agents/index.js'\nexport const thing = agents\n",
    'repositories/things.ts': "import { thing } from '../services/thing.js'\nexport const things = thing\n",
    'plugins/uses-route.ts': "import { audit } from '../routes/audit/index.js'\nexport const usesRoute = audit\n",
    'cli/command.ts': "import { audit } from '../routes/audit/index.js'\nexport const command = audit\n",
    'services/a.ts': "import { b } from './b.js'\nexport const a = () => b\n",
    'services/b.ts': "import { a } from './a.js'\nexport const b = () => a\n"
  }
  for (const [path, text] of Object.entries(files)) {
    await mkdir(join(tree, dirname(path)), { recursive: true })
    await writeFile(join(tree, path), text)
  }

  const result = await cruise(tree, ['cli', 'lib', 'plugins', 'routes', 'services', 'repositories'])

  t.not(result.code, 0, 'a non-zero exit fails CI')
  for (const rule of ['lib-is-a-leaf', 'route-areas-are-sealed', 'services-point-down', 'repositories-point-down',
    'plugins-never-import-routes', 'entry-points-skip-routes', 'no-cycles']) {
    t.match(result.output, new RegExp(`error ${rule}:`), `${rule} is reported`)
  }
})

/** Every .ts file below `path` (a file or a folder of the project). */
function sources (path: string): string[] {
  const absolute = join(projectRoot, path)
  if (path.endsWith('.ts')) return [absolute]
  return readdirSync(absolute, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.ts'))
    .map((name) => join(absolute, name))
}

// statements, not words: comments may name them (they are stripped first), metric labels may list verbs
const SQL_STATEMENT = /\bSELECT\b[^;`'"]*\bFROM\b|\bSELECT\s+\d|\bINSERT\s+INTO\b|\bUPDATE\s+[a-z_.]+\s+SET\b|\bDELETE\s+FROM\b/

function withoutComments (text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1')
}

t.test('SQL text appears only under repositories/ (and migrations/)', async (t) => {
  const outside = PRODUCT.filter((path) => path !== 'repositories').flatMap(sources)
  t.ok(outside.length > 30, 'the scan sees the product\'s files')
  const offenders = outside.filter((file) => SQL_STATEMENT.test(withoutComments(readFileSync(file, 'utf8'))))
  t.same(offenders.map((file) => relative(projectRoot, file)), [])
  t.ok(sources('repositories').some((file) => SQL_STATEMENT.test(withoutComments(readFileSync(file, 'utf8')))), 'the pattern finds the SQL that is there')
})
