import type { TSchema } from 'typebox'
import { Problem } from './common.js'
import { Agent, AgentList, CreateAgent, UpdateAgent } from './agents.js'
import { CreateCredential, Credential, CredentialList, IssuedCredential, RotateCredential } from './credentials.js'
import { AgentKeys, PutAgentKeys } from './agent-keys.js'
import { AuditEvent, AuditList, AuditVerification } from './audit.js'
import { CreateFederationIssuer, FederationIssuer, FederationIssuerList, UpdateFederationIssuer } from './federation.js'
import {
  AuthorizationServerMetadata, IntrospectionResponse, Jwks, OAuthErrorBody, ProtectedResourceMetadata, TokenParameter, TokenRequest, TokenResponse
} from './oauth.js'
import { Health, Liveness, Readiness } from './health.js'

/**
 * Every named schema (each has an `$id`): app.ts registers them once with app.addSchema and hands
 * them to the request validator; routes and other schemas point at them with ref() (common.ts).
 * The OpenAPI document lists them under components.schemas by their `$id`, the names a generated
 * client's types carry — renaming one is a breaking change for such clients.
 */
export const COMPONENT_SCHEMAS: readonly TSchema[] = [
  Problem, OAuthErrorBody,
  Agent, AgentList, CreateAgent, UpdateAgent, AgentKeys, PutAgentKeys,
  Credential, IssuedCredential, CredentialList, CreateCredential, RotateCredential,
  AuditEvent, AuditList, AuditVerification,
  FederationIssuer, FederationIssuerList, CreateFederationIssuer, UpdateFederationIssuer,
  TokenRequest, TokenResponse, TokenParameter, IntrospectionResponse, Jwks, AuthorizationServerMetadata, ProtectedResourceMetadata,
  Health, Liveness, Readiness
]
