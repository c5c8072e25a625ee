import { Type, type Static } from 'typebox'
import { Cursor, Uuid } from './common.js'

/** `resource.verb`: the actions of API.md and any a later issue adds (token.exchanged, agent.keys_updated). */
export const AuditActionName = Type.String({ pattern: '^[a-z]+\\.[a-z_]+$', maxLength: 64, description: 'an audit action, e.g. token.issued' })
export const AuditOutcome = Type.Enum(['success', 'failure'])

/** An instant as RFC 3339 (the ISO 8601 profile with a date, a time and a zone), e.g. 2026-01-31T23:59:59Z. */
const DateFilter = Type.String({ format: 'date-time', maxLength: 40, description: 'ISO 8601 instant with a time zone, e.g. 2026-01-31T23:59:59Z' })

export const AuditEvent = Type.Object({
  eventId: Uuid,
  agentId: Type.Union([Uuid, Type.Null()], { description: 'the agent the event is about (the target)' }),
  action: Type.String(),
  outcome: AuditOutcome,
  ipAddress: Type.Union([Type.String(), Type.Null()]),
  userAgent: Type.Union([Type.String(), Type.Null()]),
  metadata: Type.Object({}, { additionalProperties: true, description: 'details; the caller is metadata.actorId' }),
  timestamp: Type.String({ format: 'date-time', description: 'when the event was recorded, UTC, microsecond precision' })
}, { title: 'AuditEvent' })
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
  data: Type.Array(AuditEvent),
  nextCursor: Type.Union([Type.String(), Type.Null()])
}, { title: 'AuditList' })

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
}, { title: 'AuditVerification' })
export type AuditVerification = Static<typeof AuditVerification>
