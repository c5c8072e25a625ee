import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, resolve, sep } from 'node:path'
import t from 'tap'
import { projectRoot } from '../../lib/paths.js'

/**
 * The operations documents: every relative link resolves, and every HTTP call in the runbooks, the
 * Terraform README and the README's deployment section is a route of the API, with its method and,
 * for the audit log, only the query parameters it defines.
 */

const ROUTES: Array<[string, string]> = [
  ['POST', '/api/v1/token'],
  ['POST', '/api/v1/token/introspect'],
  ['POST', '/api/v1/token/revoke'],
  ['GET', '/.well-known/jwks.json'],
  ['GET', '/.well-known/oauth-authorization-server'],
  ['POST', '/api/v1/agents'],
  ['GET', '/api/v1/agents'],
  ['GET', '/api/v1/agents/:id'],
  ['PATCH', '/api/v1/agents/:id'],
  ['DELETE', '/api/v1/agents/:id'],
  ['POST', '/api/v1/agents/:id/credentials'],
  ['GET', '/api/v1/agents/:id/credentials'],
  ['POST', '/api/v1/agents/:id/credentials/:id/rotate'],
  ['DELETE', '/api/v1/agents/:id/credentials/:id'],
  ['PUT', '/api/v1/agents/:id/jwks'],
  ['GET', '/api/v1/agents/:id/jwks'],
  ['POST', '/api/v1/federation/issuers'],
  ['GET', '/api/v1/federation/issuers'],
  ['GET', '/api/v1/federation/issuers/:id'],
  ['PATCH', '/api/v1/federation/issuers/:id'],
  ['DELETE', '/api/v1/federation/issuers/:id'],
  ['GET', '/api/v1/audit'],
  ['GET', '/api/v1/audit/verify'],
  ['GET', '/api/v1/audit/:id'],
  ['GET', '/health'],
  ['GET', '/health/live'],
  ['GET', '/health/ready'],
  ['GET', '/metrics'],
  ['GET', '/docs']
]
const QUERY: Record<string, string[]> = {
  '/api/v1/audit': ['agentId', 'action', 'outcome', 'startDate', 'endDate', 'limit', 'cursor'],
  '/api/v1/audit/verify': ['startDate', 'endDate'],
  '/api/v1/agents': ['status', 'deploymentEnv', 'agentType', 'owner', 'limit', 'cursor']
}
const ACTIONS = ['token.issued', 'token.revoked', 'token.introspected', 'agent.created', 'agent.updated', 'agent.suspended',
  'agent.reactivated', 'agent.decommissioned', 'credential.generated', 'credential.rotated', 'credential.revoked',
  'auth.failed', 'access.denied', 'token.exchanged', 'agent.keys_updated',
  'federation.issuer_created', 'federation.issuer_updated', 'federation.issuer_deleted']

const runbooks = readdirSync(join(projectRoot, 'ops/runbooks')).filter((file) => file.endsWith('.md')).map((file) => `ops/runbooks/${file}`)
const readme = readFileSync(join(projectRoot, 'README.md'), 'utf8')
const deployment = /\n### Deployment\n[\s\S]*?(?=\n## )/.exec(readme)?.[0] ?? ''
const documents: Array<{ path: string, text: string }> = [
  ...runbooks.map((path) => ({ path, text: readFileSync(join(projectRoot, path), 'utf8') })),
  { path: 'terraform/README.md', text: readFileSync(join(projectRoot, 'terraform/README.md'), 'utf8') },
  { path: 'README.md', text: deployment }
]

t.test('the README has the deployment section, linking every artefact', async (t) => {
  t.ok(deployment !== '', 'README.md has "### Deployment" under "## Operations"')
  const operations = readme.indexOf('\n## Operations\n')
  t.ok(operations !== -1 && operations < readme.indexOf('\n### Deployment\n'), 'inside the Operations section')
  for (const target of ['Dockerfile', '.dockerignore', 'compose.yaml', 'terraform/README.md', 'terraform/environments/aws', 'terraform/environments/gcp', ...runbooks]) {
    t.ok(deployment.includes(`](${target})`), `links ${target}`)
  }
  t.match(deployment, /```bash\ndocker compose up --build -d\n```/, 'documents `docker compose up --build -d`')
  t.match(deployment, /cp \.env\.example \.env/, 'starting from .env.example')
  t.match(deployment, /Why Node 24/, 'says why Node 24')
  t.match(deployment, /end of life/, 'Node 20 is past end of life')
  t.match(deployment, /sslrootcert=\/app\/certs\/aws-rds-global-bundle\.pem/, 'documents the RDS CA bundle for DATABASE_URL')
  t.match(deployment, /\/health\/live/, 'names the liveness check')
  t.match(deployment, /\/health\/ready/, 'and the readiness check')
})

t.test('every relative link resolves to a file inside the repository (a user\'s clone has nothing beside it)', async (t) => {
  const linked = [
    ...documents.filter((document) => document.path !== 'README.md'),
    { path: 'README.md', text: readme },
    { path: 'ARCHITECTURE.md', text: readFileSync(join(projectRoot, 'ARCHITECTURE.md'), 'utf8') }
  ]
  for (const { path, text } of linked) {
    for (const match of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = match[1].split('#')[0]
      if (target === '' || /^[a-z]+:/.test(target)) continue
      const resolved = resolve(projectRoot, dirname(path), target)
      t.ok(resolved.startsWith(projectRoot + sep), `${path} → ${target} stays inside the repository`)
      t.ok(existsSync(resolved), `${path} → ${target} exists`)
    }
  }
})

/** curl calls in fenced code blocks: method, path and query parameter names. */
function calls (text: string): Array<{ method: string, path: string, query: string[], line: string }> {
  const found: Array<{ method: string, path: string, query: string[], line: string }> = []
  for (const block of text.matchAll(/```(?:bash|sh)?\n([\s\S]*?)```/g)) {
    const lines = block[1].replace(/\\\n\s*/g, ' ').split('\n')
    for (const line of lines) {
      if (!/\bcurl\b/.test(line)) continue
      for (const url of line.matchAll(/(?:\$IDP|https:\/\/idp\.example\.com|http:\/\/localhost:3000)(\/[^\s"'`)]*)/g)) {
        const [path, query = ''] = url[1].split('?')
        const explicit = /(?:-X|--request)\s+([A-Z]+)/.exec(line)?.[1]
        const method = explicit ?? (/\s(-d|--data|--data-urlencode|--data-raw)\s/.test(line) ? 'POST' : 'GET')
        const normalised = path.split('/').map((segment) => /^(\$|\{|<)/.test(segment) ? ':id' : segment).join('/').replace(/\/$/, '')
        found.push({ method, path: normalised, query: [...query.matchAll(/(?:^|&)([A-Za-z]+)=/g)].map((entry) => entry[1]), line: line.trim() })
      }
    }
  }
  return found
}

t.test('every HTTP call in the operations documents is a route of the API, with its method and parameters', async (t) => {
  let count = 0
  for (const { path, text } of documents) {
    for (const call of calls(text)) {
      count += 1
      const known = ROUTES.some(([method, route]) => method === call.method && (route === call.path ||
        (route.includes(':id') && new RegExp(`^${route.replace(/:id/g, '[^/]+')}$`).test(call.path) && !ROUTES.some(([, exact]) => exact === call.path && exact !== route))))
      t.ok(known, `${path}: ${call.method} ${call.path}`, { line: call.line })
      const allowed = QUERY[call.path]
      if (call.query.length > 0) {
        t.ok(allowed !== undefined && call.query.every((name) => allowed.includes(name)), `${path}: ${call.path}?${call.query.join('&')}`, { line: call.line })
      }
      for (const action of call.line.matchAll(/action=([a-z_.]+)/g)) t.ok(ACTIONS.includes(action[1]), `${path}: audit action ${action[1]}`)
    }
  }
  t.ok(count >= 20, `${count} calls checked`)
})

t.test('the runbooks index lists every runbook, the key rotation one included', async (t) => {
  const index = readFileSync(join(projectRoot, 'ops/runbooks/README.md'), 'utf8')
  for (const file of runbooks.map((path) => path.split('/').pop() as string).filter((file) => file !== 'README.md')) {
    t.ok(index.includes(`](${file})`), `ops/runbooks/README.md links ${file}`)
  }
})
