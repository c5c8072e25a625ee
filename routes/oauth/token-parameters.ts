import { OAuthError } from '../../lib/errors.js'
import { resourceUriProblem } from '../../lib/resource-uri.js'

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

/** A token's `aud`: one target as a string, several as an array (RFC 9068 §2.2, RFC 7519 §4.1.3). */
export type Audience = string | string[]

export type Target = { ok: true, audience: Audience } | { ok: false, refused: string, description: string }

/** Why one requested target is refused, or null when the client may have it. */
function targetProblem (target: string, parameter: string, issuer: string, allowed: readonly string[]): string | null {
  // the issuer (the default audience) is always allowed, whatever its scheme
  if (target === issuer) return null
  const malformed = resourceUriProblem(target, parameter)
  if (malformed !== null) return malformed
  // compared exactly as registered: no normalisation, the token's aud is the string asked for
  if (!allowed.includes(target)) return `${parameter} is not one of this client's audiences`
  return null
}

/**
 * The audience of a token request (RFC 8707 §2): each requested target an absolute https URI (http
 * only for a loopback host) without a fragment, listed in the client agent's `audiences`, or the
 * issuer itself; none requested: the issuer. Several (a repeated `resource`) become an array `aud`.
 */
export function audienceFor (requested: string | string[] | undefined, issuer: string, allowed: readonly string[], parameter = 'resource'): Target {
  if (requested === undefined) return { ok: true, audience: issuer }
  const targets = Array.isArray(requested) ? requested : [requested]
  for (const target of targets) {
    const problem = targetProblem(target, parameter, issuer, allowed)
    if (problem !== null) return { ok: false, refused: target, description: problem }
  }
  return { ok: true, audience: targets.length === 1 ? targets[0] : targets }
}
