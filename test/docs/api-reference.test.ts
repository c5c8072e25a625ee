import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { projectRoot } from '../../lib/paths.js'
import { renderApiReference } from '../../lib/api-reference.js'
import { build } from '../helper.js'

/**
 * docs/openapi.json and docs/api.md are what the code generates (`npm run docs:api`, which uses
 * the dev default ISSUER_URL): a route or schema changed without regenerating them fails here.
 */
const app = await build(t, { env: { ISSUER_URL: 'http://localhost:3000' } })
const document = (await app.inject({ method: 'GET', url: '/docs/json' })).json() as Record<string, any>
const regenerate = 'run `npm run docs:api` and commit docs/'

t.test('docs/openapi.json is the document the server serves', async (t) => {
  const committed = JSON.parse(readFileSync(join(projectRoot, 'docs', 'openapi.json'), 'utf8')) as unknown
  t.same(committed, document, regenerate)
})

t.test('docs/api.md is rendered from it', async (t) => {
  const committed = readFileSync(join(projectRoot, 'docs', 'api.md'), 'utf8')
  t.equal(committed, renderApiReference(document), regenerate)
  for (const operationId of ['issueToken', 'createAgent', 'rotateCredential', 'listAuditEvents', 'getHealth']) {
    t.ok(committed.includes(`(\`${operationId}\`)`), `documents ${operationId}`)
  }
  t.match(committed, /### Agent\n/, 'and the schemas')
})
