import { createHash } from 'node:crypto'
import type { ChainedEvent } from '../../repositories/audit-chain.js'

/**
 * The canonical form of an audit event and the hash chain over it (README, "Hash chain").
 *
 *   hash(n) = SHA-256( hash(n-1) ‖ UTF-8( F(version) F(chainIndex) F(eventId) F(timestamp) F(agentId)
 *                                          F(action) F(outcome) F(ipAddress) F(userAgent) F(metadata) ) )
 *
 * F(null) = "-"; F(text) = its UTF-8 byte length in decimal, ":", the text. The length prefix makes
 * the concatenation unambiguous without escaping, and any language (or SQL) can rebuild it. Every
 * value is PostgreSQL's own text for the stored value, so nothing is lost in a JavaScript round trip:
 * the timestamp at microsecond precision in UTC (YYYY-MM-DDTHH:MM:SS.ffffffZ), the address as
 * inet::text (with its mask, 127.0.0.1/32), the metadata as jsonb::text (PostgreSQL's normalised
 * key order and spacing), the UUIDs in lower case. hash(0), before the first event, is 32 zero bytes.
 */
export const CHAIN_VERSION = 'agentidp-audit-v1'
export const GENESIS_HASH = Buffer.alloc(32)

function field (value: string | null): string {
  return value === null ? '-' : `${Buffer.byteLength(value, 'utf8')}:${value}`
}

export function canonicalEvent (event: ChainedEvent): string {
  return [
    CHAIN_VERSION, event.chainIndex, event.eventId, event.createdAt, event.agentId, event.action, event.outcome,
    event.ipAddress, event.userAgent, event.metadata
  ].map(field).join('')
}

export function chainHash (previous: Buffer, event: ChainedEvent): Buffer {
  return createHash('sha256').update(previous).update(canonicalEvent(event), 'utf8').digest()
}
