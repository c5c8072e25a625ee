import { Type, type Static } from 'typebox'
import { Cursor, EXAMPLE, ref, Uuid } from './common.js'

/** `resource.verb`: the actions of API.md and any a later issue adds (token.exchanged, agent.keys_updated, federation.issuer_created|updated|deleted). */
export const AuditActionName = Type.String({ pattern: '^[a-z]+\\.[a-z_]+$', maxLength: 64, description: 'an audit action, e.g. token.issued' })
export const AuditOutcome = Type.Enum(['success', 'failure'])

/** An instant as RFC 3339 (the ISO 8601 profile with a date, a time and a zone), e.g. 2026-01-31T23:59:59Z. */
const DateFilter = Type.String({ format: 'date-time', maxLength: 40, description: 'ISO 8601 instant with a time zone, e.g. 2026-01-31T23:59:59Z' })

const EVENT_EXAMPLE = {
  eventId: EXAMPLE.eventId,
  agentId: EXAMPLE.agentId,
  action: 'token.issued',
  outcome: 'success',
  ipAddress: '203.0.113.7',
  userAgent: 'invoice-screener/1.4.2',
  metadata: {
    actorId: EXAMPLE.agentId,
    jti: 't3Ecbm3TT4uZ4V0hp6Xvd9R2rzXxkPcO2Z0mVaHX3Fg',
    credentialId: EXAMPLE.credentialId,
    scope: 'documents:read invoices:classify',
    audience: 'http://localhost:3000',
    expiresAt: 1796118600,
    authMethod: 'client_secret_basic'
  },
  timestamp: '2026-11-29T10:00:00.123456Z'
}

export const AuditEvent = Type.Object({
  eventId: Uuid,
  agentId: Type.Union([Uuid, Type.Null()], { description: 'the agent the event is about (the target)' }),
  action: Type.String(),
  outcome: AuditOutcome,
  ipAddress: Type.Union([Type.String(), Type.Null()]),
  userAgent: Type.Union([Type.String(), Type.Null()]),
  metadata: Type.Object({}, { additionalProperties: true, description: 'details; the caller is metadata.actorId' }),
  timestamp: Type.String({ format: 'date-time', description: 'when the event was recorded, UTC, microsecond precision' })
}, { $id: 'AuditEvent', title: 'AuditEvent', description: 'One entry of the audit trail', examples: [EVENT_EXAMPLE] })
export type AuditEvent = Static<typeof AuditEvent>

export const ListAuditQuery = Type.Object({
  agentId: Type.Optional(Uuid),
  action: Type.Optional(AuditActionName),
  outcome: Type.Optional(AuditOutcome),
  startDate: Type.Optional(DateFilter),
  endDate: Type.Optional(DateFilter),
  limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
  cursor: Type.Optional(Cursor)
}, { additionalProperties: false })
export type ListAuditQuery = Static<typeof ListAuditQuery>

export const AuditList = Type.Object({
  data: Type.Array(ref(AuditEvent)),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'pass as cursor for the next page; null on the last' })
}, { $id: 'AuditList', title: 'AuditList', description: 'A page of audit events, newest first', examples: [{ data: [EVENT_EXAMPLE], nextCursor: null }] })

export const AuditEventParams = Type.Object({ eventId: Uuid }, { additionalProperties: false })

export const VerifyAuditQuery = Type.Object({
  startDate: Type.Optional(DateFilter),
  endDate: Type.Optional(DateFilter)
}, { additionalProperties: false })
export type VerifyAuditQuery = Static<typeof VerifyAuditQuery>

export const AuditVerification = Type.Object({
  intact: Type.Boolean({ description: 'every sealed event checked matches its hash and follows its predecessor' }),
  checked: Type.Integer({ description: 'sealed events whose hash was recomputed (events not sealed yet are not counted)' }),
  firstBrokenEventId: Type.Union([Uuid, Type.Null()], { description: 'the first event where the chain breaks' })
}, { $id: 'AuditVerification', title: 'AuditVerification', examples: [{ intact: true, checked: 1842, firstBrokenEventId: null }] })
export type AuditVerification = Static<typeof AuditVerification>
