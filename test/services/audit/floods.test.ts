import t from 'tap'
import type { Queryable } from '../../../repositories/transaction.js'
import { createFloodLedger, writeFloodSummaries } from '../../../services/audit/floods.js'

const BREACH = { action: 'access.denied', reason: 'bearer_failures_rate_limited' } as const

t.test('the first refusal of an address is to be written in full, the next ones only counted until the summary', async (t) => {
  const ledger = createFloodLedger()
  t.equal(ledger.note('198.51.100.1', BREACH, 1000), true, 'the first is written')
  for (let n = 0; n < 5; n += 1) t.equal(ledger.note('198.51.100.1', BREACH, 1001 + n), false)
  t.equal(ledger.note('198.51.100.2', BREACH, 1002), true, 'another address has its own first')
  t.same(ledger.drain(), [{ ...BREACH, ipAddress: '198.51.100.1', suppressed: 5, firstAt: 1000, lastAt: 1005 }],
    'one summary, for the address with refusals beyond its first')
  t.equal(ledger.note('198.51.100.1', BREACH), true, 'after a summary, the next refusal is written in full again')
})

t.test('past its bound the ledger counts new addresses together, in one summary without an address', async (t) => {
  const ledger = createFloodLedger(2)
  ledger.note('a', BREACH)
  ledger.note('b', BREACH)
  for (const address of ['c', 'd', 'e']) t.equal(ledger.note(address, BREACH), false, `${address}: not written, counted`)
  t.equal(ledger.size, 3, 'two addresses and one shared tally')
  t.match(ledger.drain(), [{ ipAddress: null, suppressed: 3 }])
})

t.test('summaries whose write fails are kept for the next run', async (t) => {
  const ledger = createFloodLedger()
  ledger.note('198.51.100.9', BREACH)
  ledger.note('198.51.100.9', BREACH)
  const down: Queryable = { query: async () => { throw new Error('connection terminated') } }
  await t.rejects(writeFloodSummaries(down, ledger), /connection terminated/)
  const written: unknown[] = []
  // the insert is a named statement: its parameters come in the query config
  const up = {
    query: async (config: { values?: unknown[] }) => { written.push(...JSON.parse(String(config.values?.[0]))); return { rows: [] } }
  } as unknown as Queryable
  t.equal(await writeFloodSummaries(up, ledger), 1)
  t.match(written, [{ action: 'access.denied', agent_id: null, ip_address: '198.51.100.9', metadata: { reason: BREACH.reason, summary: true, suppressed: 1 } }])
  t.equal(await writeFloodSummaries(up, ledger), 0, 'and written once')
})
