import { OAuthError } from '../../lib/errors.js'

/** The parameters every grant of the token endpoint shares: the scope asked for and the audience. */

// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/

/** The scopes asked for, or the scopes asked for beyond the client's capabilities (`ungranted`). */
export function requestedScopes (scope: string | undefined, capabilities: string[]): { scopes: string[], ungranted: string[] } {
  const asked = (scope ?? '').split(' ').filter((token) => token !== '')
  if (asked.length === 0) return { scopes: capabilities, ungranted: [] }
  if (!asked.every((token) => SCOPE_TOKEN.test(token))) throw new OAuthError(400, 'invalid_scope', 'scope is malformed')
  return { scopes: [...new Set(asked)], ungranted: asked.filter((token) => !capabilities.includes(token)) }
}

/** RFC 8707 §2: an absolute URI without a fragment. */
export function audienceFor (resource: string | undefined, issuer: string): string {
  if (resource === undefined) return issuer
  // URL parsing forgives surrounding white space; an audience must be exactly what was asked for
  if (/\s/.test(resource)) throw new OAuthError(400, 'invalid_target', 'resource must not contain white space')
  let url: URL
  try {
    url = new URL(resource)
  } catch {
    throw new OAuthError(400, 'invalid_target', 'resource must be an absolute URI')
  }
  if (url.hash !== '' || resource.includes('#')) throw new OAuthError(400, 'invalid_target', 'resource must not contain a fragment')
  return resource
}
