import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { projectRoot } from '../../lib/paths.js'

/** The README's Monitoring section says what operators need, where they look for it. */

const readme = readFileSync(join(projectRoot, 'README.md'), 'utf8')
const operations = readme.indexOf('\n## Operations\n')
const start = readme.indexOf('\n### Monitoring\n')
const end = readme.indexOf('\n## ', start + 1)
const section = readme.slice(start, end)

t.test('a Monitoring subsection under Operations', async (t) => {
  t.ok(operations !== -1 && start > operations && (readme.indexOf('\n## ', operations + 1) >= end), 'inside "## Operations"')
  t.equal(readme.split('\n### Monitoring\n').length, 2, 'one block')
})

t.test('it covers the endpoint, its restriction, the labels, the logs, ops/monitoring and the compose overlay', async (t) => {
  for (const metric of ['agentidp_tokens_issued_total', 'agentidp_agents_registered_total', 'agentidp_http_requests_total',
    'agentidp_http_request_duration_seconds', 'agentidp_db_query_duration_seconds', 'agentidp_redis_command_duration_seconds']) {
    t.ok(section.includes(`\`${metric}\``), metric)
  }
  t.match(section, /GET \/metrics/)
  t.match(section, /METRICS_ENABLED=false/)
  t.match(section, /METRICS_TOKEN/)
  t.match(section, /\*\*In production:\*\*/, 'the production recommendation')
  t.match(section, /one label value per scope/, 'the scope-label choice')
  t.match(section, /__not_found__/)
  t.match(section, /x-request-id/)
  t.match(section, /\]\(ops\/monitoring\/\)/)
  t.match(section, /```bash\n[\s\S]*docker compose -f compose\.yaml -f compose\.monitoring\.yaml up -d\n```/)
  t.match(section, /promtool/)
  t.match(readme, /\| `METRICS_TOKEN` \|/, 'the configuration table lists METRICS_TOKEN')
})
