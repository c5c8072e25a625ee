import { Option } from 'commander'

/**
 * What commands print on stdout: a table for a person at a terminal, JSON (one document per line)
 * when stdout is piped, `--output` deciding otherwise. Messages for people go to stderr.
 */

export type OutputFormat = 'table' | 'json'

export const outputOption = () => new Option('-o, --output <format>', 'table or json (default: table on a terminal, json when piped)')
  .choices(['table', 'json'])

export function resolveFormat (option: string | undefined, stdout: { isTTY?: boolean } = process.stdout): OutputFormat {
  if (option === 'table' || option === 'json') return option
  return stdout.isTTY === true ? 'table' : 'json'
}

export function printJson (value: unknown): void {
  process.stdout.write(JSON.stringify(value) + '\n')
}

/** A message for a person: stderr, never mixed into what scripts parse. */
export function note (message: string): void {
  process.stderr.write(`${message}\n`)
}

function cell (value: unknown): string {
  if (value === null || value === undefined) return '-'
  if (Array.isArray(value)) return value.map(String).join(' ')
  if (typeof value === 'object') return JSON.stringify(value)
  return String(value).replace(/[\r\n\t]/g, ' ')
}

/** Rows as aligned columns under a header, a column per name. */
export function printTable (rows: Array<Record<string, unknown>>, columns: string[]): void {
  const cells = rows.map((row) => columns.map((column) => cell(row[column])))
  const widths = columns.map((column, index) => Math.max(column.length, ...cells.map((line) => line[index].length)))
  const line = (values: string[]) => values.map((value, index) => index === values.length - 1 ? value : value.padEnd(widths[index])).join('  ')
  process.stdout.write([line(columns), ...cells.map(line)].join('\n') + '\n')
}

/** One object as `name  value` lines. */
export function printRecord (record: Record<string, unknown>): void {
  const width = Math.max(...Object.keys(record).map((key) => key.length))
  process.stdout.write(Object.entries(record).map(([key, value]) => `${key.padEnd(width)}  ${cell(value)}`).join('\n') + '\n')
}

/** A document in the chosen format: JSON as it is, or a table of `rows(value)` / a record. */
export function print (format: OutputFormat, value: unknown, table?: { rows: Array<Record<string, unknown>>, columns: string[] }): void {
  if (format === 'json') printJson(value)
  else if (table !== undefined) printTable(table.rows, table.columns)
  else printRecord(value as Record<string, unknown>)
}
