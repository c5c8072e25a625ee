/**
 * SQL expression giving a timestamptz column as exact text, microseconds included (cursors carry
 * it, so that no two rows collapse onto one JavaScript millisecond; the hash chain covers it).
 */
export const exactTimestamp = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`
