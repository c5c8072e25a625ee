import t from 'tap'
import pg from 'pg'
import { build } from '../helper.js'
import { auditListStatement } from '../../repositories/audit-events.js'
import { encodeCursor } from '../../lib/cursor.js'
import type { ListAuditQuery } from '../../schemas/audit.js'

/**
 * GET /api/v1/audit stays fast at any size because every filter combination has an index whose
 * equality columns are exactly its filters, followed by the sort key: PostgreSQL can walk it in
 * order from the cursor, reading only matching rows. Shown with EXPLAIN on 100,000 events:
 *
 * 1. coverage: with its own index the only one left (the others dropped in a transaction that is
 *    rolled back) and sorting priced out, each combination is one ordered scan of that index, every
 *    condition (equalities, date range, keyset) an index condition, no sort;
 * 2. the free planner on a realistic trail never scans the table and never sorts more than a
 *    handful of rows (for a filter matching few rows a bitmap scan and a small sort is as good).
 *
 * bench/audit.mjs times the same queries on 1,000,000 events.
 */
const app = await build(t)
// a token-heavy trail: half token.issued, a quarter failed authentications; one busy agent, 400 quiet ones
const ACTIONS = ['token.issued', 'token.issued', 'token.issued', 'token.issued', 'auth.failed', 'auth.failed', 'agent.updated', 'access.denied']

// seeded on a connection of its own: no statement timeout, and the indexes rebuilt in bulk afterwards
const seeder = new pg.Client({ connectionString: app.databaseUrl })
await seeder.connect()
const { rows: definitions } = await seeder.query<{ name: string, definition: string }>(
  "SELECT indexname AS name, indexdef AS definition FROM pg_indexes WHERE tablename = 'audit_events' AND schemaname = current_schema() AND indexname <> 'audit_events_pkey'")
for (const { name } of definitions) await seeder.query(`DROP INDEX ${name}`)
await seeder.query(`
  WITH agents AS (SELECT array_agg(gen_random_uuid()) AS ids FROM generate_series(1, 401))
  INSERT INTO audit_events (event_id, agent_id, action, outcome, ip_address, user_agent, metadata, created_at)
  SELECT gen_random_uuid(), CASE WHEN n % 5 < 2 THEN agents.ids[1] ELSE agents.ids[2 + (n * 7919) % 400] END, a.action,
    CASE WHEN a.action IN ('auth.failed', 'access.denied') THEN 'failure' ELSE 'success' END,
    '10.0.0.1', 'bench', jsonb_build_object('n', n), now() - (n * interval '52 seconds')
  FROM generate_series(1, 100000) AS n, agents,
    LATERAL (SELECT ($1::text[])[1 + (n * 31) % 8] AS action) AS a`, [ACTIONS])
for (const { definition } of definitions) await seeder.query(definition)
await seeder.query('ANALYZE audit_events')
await seeder.end()
const { rows: [sample] } = await app.pg.query<{ busy: string, quiet: string, created_at: string, event_id: string }>(
  `SELECT (SELECT agent_id FROM audit_events GROUP BY agent_id ORDER BY count(*) DESC LIMIT 1) AS busy,
     (SELECT agent_id FROM audit_events GROUP BY agent_id ORDER BY count(*) LIMIT 1) AS quiet,
     to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at, event_id
   FROM audit_events ORDER BY created_at DESC OFFSET 30000 LIMIT 1`)

interface PlanNode { 'Node Type': string, 'Index Name'?: string, Filter?: string, 'Plan Rows': number, Plans?: PlanNode[] }

function nodes (plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodes)]
}

const indexes = definitions

/** The plan of the list query; with `only`, the plan PostgreSQL makes when that index is the only one. */
async function explain (query: ListAuditQuery, only?: string): Promise<PlanNode[]> {
  const statement = auditListStatement(query)
  const client = await app.pg.connect()
  try {
    await client.query('BEGIN')
    if (only !== undefined) {
      for (const { name } of indexes) if (name !== only) await client.query(`DROP INDEX ${name}`)
      await client.query('SET LOCAL enable_sort = off; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off')
    }
    const { rows } = await client.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(`EXPLAIN (FORMAT JSON) ${statement.text}`, statement.values)
    return nodes(rows[0]['QUERY PLAN'][0].Plan)
  } finally {
    await client.query('ROLLBACK')
    client.release()
  }
}

const EXPECTED_INDEX: Record<string, string> = {
  '': 'audit_events_newest_idx',
  agentId: 'audit_events_agent_id_idx',
  action: 'audit_events_action_idx',
  outcome: 'audit_events_outcome_idx',
  'agentId,action': 'audit_events_agent_action_idx',
  'agentId,outcome': 'audit_events_agent_outcome_idx',
  'action,outcome': 'audit_events_action_outcome_idx',
  'agentId,action,outcome': 'audit_events_agent_action_outcome_idx'
}

const cursor = encodeCursor({ createdAt: sample.created_at, id: sample.event_id })
const startDate = new Date(Date.now() - 20 * 86_400_000).toISOString()
const endDate = new Date(Date.now() - 2 * 86_400_000).toISOString()
const VARIANTS = ['first page', 'deep page (cursor)', 'date range', 'date range + cursor', 'start only'] as const

function queryFor (combination: string, variant: typeof VARIANTS[number], agentId: string): ListAuditQuery {
  const values = { agentId, action: 'auth.failed', outcome: 'failure' }
  const query: ListAuditQuery = { limit: 50 }
  for (const filter of combination === '' ? [] : combination.split(',')) Object.assign(query, { [filter]: values[filter as keyof typeof values] })
  if (variant.includes('cursor')) query.cursor = cursor
  if (variant.startsWith('date range')) Object.assign(query, { startDate, endDate })
  if (variant === 'start only') query.startDate = startDate
  return query
}

for (const [combination, index] of Object.entries(EXPECTED_INDEX)) {
  for (const variant of VARIANTS) {
    t.test(`[${combination || 'no filter'}] ${variant}: ${index} serves it in order, reading only matching rows`, async (t) => {
      const plan = await explain(queryFor(combination, variant, sample.busy), index)
      const types = plan.map((node) => node['Node Type'])
      t.same(types, ['Limit', 'Index Scan'], types.join(' > '))
      t.equal(plan[1]?.['Index Name'], index)
      t.equal(plan[1]?.Filter, undefined, 'every condition is an index condition')
    })
    for (const [who, agentId] of [['busy agent', sample.busy], ['quiet agent', sample.quiet]]) {
      if (!combination.includes('agentId') && who === 'quiet agent') continue
      t.test(`[${combination || 'no filter'}] ${variant}, ${who}, free planner: no table scan, no large sort`, async (t) => {
        const plan = await explain(queryFor(combination, variant, agentId))
        const types = plan.map((node) => node['Node Type'])
        t.notOk(types.includes('Seq Scan'), `no sequential scan: ${types.join(' > ')}`)
        for (const sort of plan.filter((node) => node['Node Type'] === 'Sort')) {
          t.ok((sort.Plans?.[0]['Plan Rows'] ?? 0) < 1000, `a sort only of a handful of rows (${sort.Plans?.[0]['Plan Rows']})`)
        }
      })
    }
  }
}
