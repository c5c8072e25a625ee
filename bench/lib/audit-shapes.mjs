// The query shapes of GET /api/v1/audit that the benches time: first pages and deep pages (a cursor
// DEEP rows in, as a client following nextCursor would hold), each filter alone and combined, a
// date range, limit=200; plus /audit/verify over one day (reported, not held to the list floor).
import { encodeCursor } from '../../dist/lib/cursor.js'

export const DEEP = 100_000

/** [{ label, path, list }] for the trail in `db`'s schema; shapes whose cursor falls off the end are left out. */
export async function auditShapes (db) {
  const { rows: [busy] } = await db.query('SELECT agent_id FROM audit_events GROUP BY agent_id ORDER BY count(*) DESC LIMIT 1')
  const { rows: [quiet] } = await db.query('SELECT agent_id FROM audit_events GROUP BY agent_id ORDER BY count(*) LIMIT 1')
  const weekAgo = new Date(Date.now() - 7 * 86_400_000).toISOString()
  const twoWeeksAgo = new Date(Date.now() - 14 * 86_400_000).toISOString()

  async function cursorAt (where, values, offset) {
    const { rows } = await db.query(
      `SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at, event_id FROM audit_events
       ${where} ORDER BY created_at DESC, event_id DESC OFFSET ${offset} LIMIT 1`, values)
    return rows.length === 0 ? null : encodeCursor({ createdAt: rows[0].at, id: rows[0].event_id })
  }
  const deep = async (where, values, query, offset = DEEP) => {
    const cursor = await cursorAt(where, values, offset)
    return cursor === null ? null : `${query}${query.includes('?') ? '&' : '?'}cursor=${cursor}`
  }
  const deepLabel = DEEP.toLocaleString('en')
  const shapes = [
    ['first page, no filter', '/api/v1/audit'],
    ['first page, limit=200', '/api/v1/audit?limit=200'],
    [`deep page (${deepLabel} in), no filter`, await deep('', [], '/api/v1/audit')],
    ['agentId (busy agent), first page', `/api/v1/audit?agentId=${busy.agent_id}`],
    [`agentId (busy agent), deep page (${deepLabel} in)`, await deep('WHERE agent_id = $1', [busy.agent_id], `/api/v1/audit?agentId=${busy.agent_id}`)],
    ['agentId (quiet agent), first page', `/api/v1/audit?agentId=${quiet.agent_id}`],
    ['action=auth.failed, first page', '/api/v1/audit?action=auth.failed'],
    [`action=token.issued, deep page (${deepLabel} in)`, await deep("WHERE action = 'token.issued'", [], '/api/v1/audit?action=token.issued')],
    ['outcome=failure, first page', '/api/v1/audit?outcome=failure'],
    ['agentId+action+outcome, first page', `/api/v1/audit?agentId=${busy.agent_id}&action=token.issued&outcome=success`],
    ['agentId+action, deep page (50,000 in)', await deep("WHERE agent_id = $1 AND action = 'token.issued'", [busy.agent_id], `/api/v1/audit?agentId=${busy.agent_id}&action=token.issued`, 50_000)],
    ['date range (one week), first page', `/api/v1/audit?startDate=${twoWeeksAgo}&endDate=${weekAgo}`],
    ['date range + action=auth.failed', `/api/v1/audit?startDate=${twoWeeksAgo}&endDate=${weekAgo}&action=auth.failed`],
    ['verify, one day', `/api/v1/audit/verify?startDate=${new Date(Date.now() - 2 * 86_400_000).toISOString()}&endDate=${new Date(Date.now() - 86_400_000).toISOString()}`]
  ]
  return shapes.filter(([, path]) => path !== null).map(([label, path]) => ({ label, path, list: !label.startsWith('verify') }))
}
