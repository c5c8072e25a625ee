import type { ClientBase } from 'pg'
import { toAuditRecord } from '../plugins/audit.js'
import { insertAuditEvents } from '../routes/audit/repository.js'
import { insertAgent } from '../routes/agents/repository.js'
import { insertCredential } from '../routes/credentials/repository.js'
import { newSecret } from '../routes/credentials/secrets.js'
import { PLATFORM_SCOPES } from '../schemas/scopes.js'

export interface BootstrapResult { agentId: string, clientId: string, clientSecret: string }

/**
 * Creates an admin agent holding every platform scope, with one credential, and its audit events,
 * in one transaction. A second run with the same email fails with AGENT_ALREADY_EXISTS.
 */
export async function bootstrapAdmin (db: ClientBase, email: string): Promise<BootstrapResult> {
  await db.query('BEGIN')
  try {
    const agent = await insertAgent(db, {
      email,
      agentType: 'custom',
      version: '1.0.0',
      capabilities: [...PLATFORM_SCOPES],
      owner: 'platform',
      deploymentEnv: 'production'
    })
    const { credentialId, secret, secretHash } = await newSecret()
    await insertCredential(db, { credentialId, clientId: agent.agentId, secretHash, expiresAt: null })
    await insertAuditEvents(db, [
      toAuditRecord(null, { action: 'agent.created', agentId: agent.agentId, metadata: { via: 'bootstrap', capabilities: agent.capabilities } }),
      toAuditRecord(null, { action: 'credential.generated', agentId: agent.agentId, metadata: { via: 'bootstrap', credentialId } })
    ])
    await db.query('COMMIT')
    return { agentId: agent.agentId, clientId: agent.agentId, clientSecret: secret }
  } catch (error) {
    await db.query('ROLLBACK')
    throw error
  }
}
