import { Type } from 'typebox'

const DependencyStatus = Type.Enum(['connected', 'error'])

export const Health = Type.Object({
  status: Type.Enum(['ok', 'degraded']),
  postgres: DependencyStatus,
  redis: DependencyStatus,
  vault: Type.Optional(DependencyStatus)
}, { title: 'Health', description: 'dependency status; no versions' })
