import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { json, managementErrors } from '../../schemas/responses.js'
import {
  AuditEvent, AuditEventParams, AuditList, AuditVerification, ListAuditQuery, VerifyAuditQuery
} from '../../schemas/audit.js'
import { findAuditEvent, listAuditEvents } from '../../repositories/audit-events.js'
import { verifyChain } from '../../services/audit/verify.js'
import { notFound, validationError } from '../../lib/errors.js'
import { canonicalInstant } from '../../lib/instant.js'

/**
 * The audit trail, read-only (scope audit:read): the events, newest first with keyset pagination,
 * one event, and the verification of the hash chain. (Retention runs in plugins/jobs.ts.)
 */

/**
 * The range filters in one canonical UTC form (lib/instant.ts: a leap second, an offset without
 * minutes or beyond what PostgreSQL takes would otherwise be a 500), and in order.
 */
function dateRange<Q extends { startDate?: string, endDate?: string }> (query: Q): Q {
  const startDate = query.startDate === undefined ? undefined : canonicalInstant(query.startDate, 'querystring.startDate')
  const endDate = query.endDate === undefined ? undefined : canonicalInstant(query.endDate, 'querystring.endDate')
  if (startDate !== undefined && endDate !== undefined && startDate > endDate) {
    throw validationError('startDate is after endDate', [{ field: 'querystring.startDate', message: 'must not be after endDate' }])
  }
  return { ...query, startDate, endDate }
}

const audit: FastifyPluginAsyncTypebox = async function auditRoutes (app) {
  app.get('/api/v1/audit', {
    config: { policy: 'audit.list' },
    schema: {
      tags: ['audit'],
      operationId: 'listAuditEvents',
      summary: 'Audit events, newest first',
      description: 'Filters combine (AND). Follow nextCursor until it is null; pages stay consistent while new events arrive.',
      querystring: ListAuditQuery,
      response: { 200: json(AuditList, 'A page of events'), ...managementErrors() }
    }
  }, async function listAudit (request) {
    return await listAuditEvents(app.pg, dateRange(request.query))
  })

  app.get('/api/v1/audit/verify', {
    config: { policy: 'audit.verify' },
    schema: {
      tags: ['audit'],
      operationId: 'verifyAuditChain',
      summary: 'Recompute the hash chain and report where it breaks',
      description: 'Default: the whole retained chain. With startDate/endDate: the sealed events of that range. Events written in the last second or so may not be sealed yet and are not counted.',
      querystring: VerifyAuditQuery,
      response: { 200: json(AuditVerification, 'The verdict'), ...managementErrors() }
    }
  }, async function verifyAudit (request) {
    const range = dateRange(request.query)
    // take in what is ready now, so that a verification right after a change covers it
    await app.audit.seal()
    return await verifyChain(app.pg.pool, range)
  })

  app.get('/api/v1/audit/:eventId', {
    config: { policy: 'audit.read' },
    schema: {
      tags: ['audit'],
      operationId: 'getAuditEvent',
      summary: 'One audit event',
      params: AuditEventParams,
      response: { 200: json(AuditEvent, 'The event'), ...managementErrors({ 404: ['AUDIT_EVENT_NOT_FOUND'] }) }
    }
  }, async function getAuditEvent (request) {
    const event = await findAuditEvent(app.pg, request.params.eventId)
    if (event === null) throw notFound('AUDIT_EVENT_NOT_FOUND', `audit event ${request.params.eventId} not found`)
    return event
  })
}

export default audit
