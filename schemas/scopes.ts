/** The platform's own scopes (API.md); agents may also carry any `resource:action` of their own. */
export const PLATFORM_SCOPES = [
  'agents:read',
  'agents:write',
  'credentials:read',
  'credentials:write',
  'tokens:read',
  'audit:read'
] as const
