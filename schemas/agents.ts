import { Type, type Static } from 'typebox'
import { Cursor, EXAMPLE, ref, SafeText, Scope, Timestamp, Uuid } from './common.js'

export const AGENT_TYPES = ['screener', 'classifier', 'orchestrator', 'extractor', 'summarizer', 'router', 'monitor', 'custom'] as const
export const DEPLOYMENT_ENVS = ['development', 'staging', 'production'] as const
export const AGENT_STATUSES = ['active', 'suspended', 'decommissioned'] as const

export const AgentType = Type.Enum([...AGENT_TYPES])
export const DeploymentEnv = Type.Enum([...DEPLOYMENT_ENVS])
export const AgentStatus = Type.Enum([...AGENT_STATUSES])

// semver.org's recommended pattern (MAJOR.MINOR.PATCH[-pre][+build])
const SEMVER = '^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)(?:-((?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\\.(?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\\+([0-9a-zA-Z-]+(?:\\.[0-9a-zA-Z-]+)*))?$'

export const Version = Type.String({ pattern: SEMVER, maxLength: 64, description: 'semantic version' })
export const Capabilities = Type.Array(Scope, { minItems: 1, maxItems: 64, uniqueItems: true, description: 'scopes this agent may be granted' })
export const Owner = SafeText(1, 128, { description: 'owner label (not a tenant boundary)' })
export const Email = Type.String({ format: 'email', maxLength: 254, description: 'unique; immutable' })
export const MayAct = Type.Array(Uuid, { maxItems: 64, uniqueItems: true, description: 'agents allowed to act for this one through token exchange (RFC 8693)' })
export const AUTH_METHOD_NAMES = ['client_secret_basic', 'client_secret_post', 'private_key_jwt'] as const
export const AuthMethods = Type.Array(Type.Enum([...AUTH_METHOD_NAMES]), {
  minItems: 1,
  maxItems: 3,
  uniqueItems: true,
  description: 'how this agent may authenticate at the token endpoint; private_key_jwt covers every JWT assertion (its own keys, a federated subject), as client_assertion or as the jwt-bearer grant. Default: all three'
})
const ClaimValue = Type.Union([Type.String({ maxLength: 1024 }), Type.Number(), Type.Boolean()])
export const FederatedSubject = Type.Object({
  issuer: Type.String({ minLength: 1, maxLength: 2048, pattern: '^(https|spiffe)://[^\\s]+$', description: 'a registered federation issuer (exact iss)' }),
  subject: SafeText(1, 1024, { description: 'the exact sub claim (e.g. system:serviceaccount:payments:invoice-bot, repo:acme/agents:ref:refs/heads/main, spiffe://prod.example/ns/payments/sa/bot)' }),
  conditions: Type.Optional(Type.Record(Type.String({ minLength: 1, maxLength: 256, pattern: '^[^\\u0000-\\u001f]+$' }), ClaimValue, {
    maxProperties: 16,
    description: 'claims the assertion must also carry, each equal to its value; a name starting with / is a JSON Pointer into nested claims (e.g. "/kubernetes.io/namespace")'
  }))
}, { additionalProperties: false })
export type FederatedSubject = Static<typeof FederatedSubject>
export const Audiences = Type.Array(Type.String({ minLength: 1, maxLength: 2048, pattern: '^[A-Za-z][A-Za-z0-9+.-]*://[^\\s#]+$' }), {
  maxItems: 20,
  uniqueItems: true,
  description: 'RFC 8707: the absolute URIs (https; http only for loopback) a `resource` may name for this agent\'s tokens; empty: only the issuer'
})
export const DpopBound = Type.Boolean({ description: 'RFC 9449: every token of this agent must be DPoP-bound (a token request without a DPoP proof is refused)' })
export const FederatedSubjects = Type.Array(FederatedSubject, { maxItems: 20, description: 'external workload identities that authenticate as this agent (workload identity federation); replaced whole on PATCH' })

const AGENT_EXAMPLE = {
  agentId: EXAMPLE.agentId,
  email: 'invoice-screener@example.com',
  agentType: 'screener',
  version: '1.4.2',
  capabilities: ['documents:read', 'invoices:classify'],
  owner: 'team-finance',
  deploymentEnv: 'production',
  status: 'active',
  mayAct: [],
  authMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt'],
  federatedSubjects: [],
  audiences: [],
  dpopBound: false,
  clientIdUrl: null,
  createdAt: EXAMPLE.createdAt,
  updatedAt: EXAMPLE.updatedAt
}

export const Agent = Type.Object({
  agentId: Uuid,
  email: Email,
  agentType: AgentType,
  version: Version,
  capabilities: Type.Array(Type.String()),
  owner: Type.String(),
  deploymentEnv: DeploymentEnv,
  status: AgentStatus,
  mayAct: Type.Array(Type.String(), { description: 'agents allowed to act for this one (token exchange); set with PATCH' }),
  authMethods: AuthMethods,
  federatedSubjects: FederatedSubjects,
  audiences: Audiences,
  dpopBound: DpopBound,
  clientIdUrl: Type.Union([Type.String(), Type.Null()], {
    description: 'for an agent that stands for a client identified by its metadata document (a client_id that is an https URL, see README "Client ID metadata documents"): that URL; null for every agent registered through this API'
  }),
  createdAt: Timestamp,
  updatedAt: Timestamp
}, { $id: 'Agent', title: 'Agent', description: 'A registered agent (its agentId is also its OAuth client_id)', examples: [AGENT_EXAMPLE] })
export type Agent = Static<typeof Agent>

export const CreateAgent = Type.Object({
  email: Email,
  agentType: AgentType,
  version: Version,
  capabilities: Capabilities,
  owner: Owner,
  deploymentEnv: DeploymentEnv,
  authMethods: Type.Optional(AuthMethods),
  federatedSubjects: Type.Optional(FederatedSubjects),
  audiences: Type.Optional(Audiences),
  dpopBound: Type.Optional(DpopBound)
}, {
  $id: 'CreateAgent',
  additionalProperties: false,
  title: 'CreateAgent',
  examples: [{
    email: 'invoice-screener@example.com',
    agentType: 'screener',
    version: '1.4.2',
    capabilities: ['documents:read', 'invoices:classify'],
    owner: 'team-finance',
    deploymentEnv: 'production'
  }]
})
export type CreateAgent = Static<typeof CreateAgent>

export const UpdateAgent = Type.Object({
  status: Type.Optional(AgentStatus),
  capabilities: Type.Optional(Capabilities),
  version: Type.Optional(Version),
  owner: Type.Optional(Owner),
  deploymentEnv: Type.Optional(DeploymentEnv),
  agentType: Type.Optional(AgentType),
  mayAct: Type.Optional(MayAct),
  authMethods: Type.Optional(AuthMethods),
  federatedSubjects: Type.Optional(FederatedSubjects),
  audiences: Type.Optional(Audiences),
  dpopBound: Type.Optional(DpopBound)
}, {
  $id: 'UpdateAgent',
  additionalProperties: false,
  minProperties: 1,
  title: 'UpdateAgent',
  description: 'At least one field; email and agentId are immutable. A status change suspends, reactivates or decommissions.',
  examples: [{ version: '1.5.0', capabilities: ['documents:read', 'invoices:classify', 'invoices:export'] }]
})
export type UpdateAgent = Static<typeof UpdateAgent>

export const AgentParams = Type.Object({ agentId: Uuid }, { additionalProperties: false })

export const ListAgentsQuery = Type.Object({
  status: Type.Optional(AgentStatus),
  deploymentEnv: Type.Optional(DeploymentEnv),
  agentType: Type.Optional(AgentType),
  owner: Type.Optional(Owner),
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
  cursor: Type.Optional(Cursor)
}, { additionalProperties: false })
export type ListAgentsQuery = Static<typeof ListAgentsQuery>

export const AgentList = Type.Object({
  data: Type.Array(ref(Agent)),
  nextCursor: Type.Union([Type.String(), Type.Null()], { description: 'pass as cursor for the next page; null on the last' })
}, { $id: 'AgentList', title: 'AgentList', description: 'A page of agents, newest first', examples: [{ data: [AGENT_EXAMPLE], nextCursor: null }] })
