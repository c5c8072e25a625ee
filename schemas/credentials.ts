import { Type, type Static } from 'typebox'
import { Timestamp, Uuid } from './common.js'

export const CredentialStatus = Type.Enum(['active', 'revoked', 'expired'])

const credentialFields = {
  credentialId: Uuid,
  clientId: Uuid,
  status: CredentialStatus,
  createdAt: Timestamp,
  expiresAt: Type.Union([Timestamp, Type.Null()]),
  revokedAt: Type.Union([Timestamp, Type.Null()])
}

export const Credential = Type.Object(credentialFields, { title: 'Credential' })
export type Credential = Static<typeof Credential>

/** The only shape that ever carries a secret: the answer to creation and rotation. */
export const IssuedCredential = Type.Object({
  ...credentialFields,
  clientSecret: Type.String({ description: 'shown once; store it now' })
}, { title: 'IssuedCredential' })
export type IssuedCredential = Static<typeof IssuedCredential>

export const CreateCredential = Type.Object({
  expiresAt: Type.Optional(Type.String({ format: 'date-time', description: 'a future instant; omitted = never expires' }))
}, { additionalProperties: false, title: 'CreateCredential' })

/** Rotation takes no parameters: the new secret keeps the credential's id and expiry. */
export const RotateCredential = Type.Object({}, { additionalProperties: false, title: 'RotateCredential' })

export const CredentialParams = Type.Object({ agentId: Uuid, credentialId: Uuid }, { additionalProperties: false })

export const CredentialList = Type.Object({ data: Type.Array(Credential) }, { title: 'CredentialList' })
