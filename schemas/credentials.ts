import { Type, type Static } from 'typebox'
import { EXAMPLE, ref, Timestamp, Uuid } from './common.js'

export const CredentialStatus = Type.Enum(['active', 'revoked', 'expired'])

const credentialFields = {
  credentialId: Uuid,
  clientId: Uuid,
  status: CredentialStatus,
  createdAt: Timestamp,
  expiresAt: Type.Union([Timestamp, Type.Null()]),
  revokedAt: Type.Union([Timestamp, Type.Null()])
}

const CREDENTIAL_EXAMPLE = {
  credentialId: EXAMPLE.credentialId,
  clientId: EXAMPLE.agentId,
  status: 'active',
  createdAt: EXAMPLE.createdAt,
  expiresAt: null,
  revokedAt: null
}

export const Credential = Type.Object(credentialFields, {
  $id: 'Credential',
  title: 'Credential',
  description: 'A client secret of an agent, without the secret (clientId is the agentId)',
  examples: [CREDENTIAL_EXAMPLE]
})
export type Credential = Static<typeof Credential>

/** The only shape that ever carries a secret: the answer to creation and rotation. */
export const IssuedCredential = Type.Object({
  ...credentialFields,
  clientSecret: Type.String({ description: 'shown once; store it now' })
}, {
  $id: 'IssuedCredential',
  title: 'IssuedCredential',
  description: 'A credential with its secret: the only answer that ever carries one (Cache-Control: no-store)',
  examples: [{ ...CREDENTIAL_EXAMPLE, clientSecret: EXAMPLE.clientSecret }]
})
export type IssuedCredential = Static<typeof IssuedCredential>

export const CreateCredential = Type.Object({
  expiresAt: Type.Optional(Type.String({ format: 'date-time', description: 'a future instant; omitted = never expires' }))
}, {
  $id: 'CreateCredential',
  additionalProperties: false,
  title: 'CreateCredential',
  description: 'Optional: no body at all is the same as {}',
  examples: [{ expiresAt: '2027-06-30T00:00:00Z' }]
})

/** Rotation takes no parameters: the new secret keeps the credential's id and expiry. */
export const RotateCredential = Type.Object({}, {
  $id: 'RotateCredential',
  additionalProperties: false,
  title: 'RotateCredential',
  description: 'Optional and empty: no body at all is the same as {}',
  examples: [{}]
})

export const CredentialParams = Type.Object({ agentId: Uuid, credentialId: Uuid }, { additionalProperties: false })

export const CredentialList = Type.Object({ data: Type.Array(ref(Credential)) }, {
  $id: 'CredentialList',
  title: 'CredentialList',
  examples: [{ data: [CREDENTIAL_EXAMPLE] }]
})
