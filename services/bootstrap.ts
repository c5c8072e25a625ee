import type { Pool } from 'pg'
import { insertAgent } from '../repositories/agents.js'
import { insertCredential } from '../repositories/credentials.js'
import { inTransaction } from '../repositories/transaction.js'
import { recordEvents } from './audit/record.js'
import { newSecret } from './secrets.js'

export interface BootstrapResult { agentId: string, clientId: string, clientSecret: string }

/**
 * Creates an admin agent holding every platform scope (the policy data's, passed in), with one
 * credential, and its audit events, in one transaction. A second run with the same email fails
 * with AGENT_ALREADY_EXISTS and creates nothing.
 */
export async function bootstrapAdmin (pool: Pool, email: string, platformScopes: readonly string[]): Promise<BootstrapResult> {
  const { credentialId, secret, secretHash } = await newSecret()
  const agentId = await inTransaction(pool, async function createAdmin (db) {
    const agent = await insertAgent(db, {
      email,
      agentType: 'custom',
      version: '1.0.0',
      capabilities: [...platformScopes],
      owner: 'platform',
      deploymentEnv: 'production'
    })
    await insertCredential(db, { credentialId, clientId: agent.agentId, secretHash, expiresAt: null })
    await recordEvents(db, null, [
      { action: 'agent.created', agentId: agent.agentId, metadata: { via: 'bootstrap', capabilities: agent.capabilities } },
      { action: 'credential.generated', agentId: agent.agentId, metadata: { via: 'bootstrap', credentialId } }
    ])
    return agent.agentId
  })
  return { agentId, clientId: agentId, clientSecret: secret }
}
