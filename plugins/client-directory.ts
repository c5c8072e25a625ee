import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { findClientByCredential, type ClientRecord } from '../repositories/credentials.js'
import { findKeyClient, type KeyClientRecord } from '../repositories/agent-keys.js'

/**
 * Who a credential belongs to and whether it may be used, for client authentication — read from
 * PostgreSQL and kept in memory for at most a second; likewise an agent with its keys, for
 * private_key_jwt and the jwt-bearer grant (without it, a PostgreSQL read per assertion). Every
 * change that matters to it (credential rotated or revoked; agent suspended, reactivated,
 * decommissioned, given other capabilities, keys or federated subjects) is
 * announced with `changed()`: this instance forgets at once and every other instance as soon as
 * the broadcast arrives, milliseconds later. Whenever broadcasts might be missed (the Redis
 * subscription is down), nothing is served from memory at all. So the token endpoint never acts
 * on a state older than the last announced change, and never on one older than a second.
 */
const TTL_MS = 1000
const MAX_ENTRIES = 10_000
const CHANNEL = 'client-changes'

export interface ClientChange { agentId?: string, credentialId?: string }

export interface ClientDirectory {
  find (credentialId: string): Promise<ClientRecord | null>
  /** the agent and its active key rows, as repositories/agent-keys.ts reads them */
  findKeyClient (agentId: string): Promise<KeyClientRecord | null>
  /** announces a committed change of an agent or a credential to every instance */
  changed (change: ClientChange): Promise<void>
}

/** A remembered active credential whose expiry has passed since it was read is expired now. */
function expiredBy (record: ClientRecord, now: number): ClientRecord {
  return record.credentialStatus === 'active' && record.expiresAtMs !== null && record.expiresAtMs <= now
    ? { ...record, credentialStatus: 'expired' }
    : record
}

declare module 'fastify' {
  interface FastifyInstance { clientDirectory: ClientDirectory }
}

export default fp(async function clientDirectoryPlugin (app: FastifyInstance) {
  const entries = new Map<string, { record: ClientRecord, expiresAt: number }>()
  const keyClients = new Map<string, { record: KeyClientRecord, expiresAt: number }>()
  let trusted = false
  // bumped by every invalidation: a read that started before one must not be stored after it
  let generation = 0

  function forget (change: ClientChange): void {
    generation += 1
    if (change.credentialId !== undefined) {
      entries.delete(change.credentialId)
      // a credential alone names no agent here: every agent's key rows are read anew (rare)
      if (change.agentId === undefined) keyClients.clear()
    }
    if (change.agentId !== undefined) {
      for (const [credentialId, entry] of entries) if (entry.record.agentId === change.agentId) entries.delete(credentialId)
      keyClients.delete(change.agentId)
    }
  }

  function forgetAll (): void {
    generation += 1
    entries.clear()
    keyClients.clear()
  }

  /** Stores what a read returned, unless a change was announced while it ran or broadcasts can't be trusted. */
  function remember<V> (store: Map<string, { record: V, expiresAt: number }>, key: string, record: V, readFrom: number, now: number): void {
    if (!trusted || readFrom !== generation) return
    if (store.size >= MAX_ENTRIES) store.delete(store.keys().next().value as string)
    store.set(key, { record, expiresAt: now + TTL_MS })
  }

  app.cache.listen(CHANNEL, function onChange (message) {
    try {
      forget(JSON.parse(message) as ClientChange)
    } catch {
      // not ours or garbled: forget everything rather than keep something stale
      forgetAll()
    }
  }, function onTrust (nowTrusted) {
    forgetAll()
    trusted = nowTrusted
  })

  const directory: ClientDirectory = {
    async find (credentialId) {
      const now = Date.now()
      const hit = trusted ? entries.get(credentialId) : undefined
      if (hit !== undefined && hit.expiresAt > now) return expiredBy(hit.record, now)
      const readFrom = generation
      const record = await findClientByCredential(app.pg, credentialId)
      if (record !== null) remember(entries, credentialId, record, readFrom, now)
      return record
    },
    async findKeyClient (agentId) {
      const now = Date.now()
      const hit = trusted ? keyClients.get(agentId) : undefined
      if (hit !== undefined && hit.expiresAt > now) return hit.record
      const readFrom = generation
      const record = await findKeyClient(app.pg, agentId)
      if (record !== null) remember(keyClients, agentId, record, readFrom, now)
      return record
    },
    async changed (change) {
      forget(change)
      try {
        await app.cache.broadcast(CHANNEL, JSON.stringify(change))
      } catch (error) {
        // the change is committed; other instances catch up within TTL_MS without the broadcast
        app.log.warn({ err: error, change }, 'could not broadcast a client change; other instances converge within a second')
      }
    }
  }
  app.decorate('clientDirectory', directory)
}, { name: 'client-directory', dependencies: ['db', 'cache'], fastify: '5.x' })
