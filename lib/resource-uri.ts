/**
 * What may be a token's audience (RFC 8707 §2): an absolute URI without a fragment, https — or http
 * only for a loopback host, where no one else can listen. One rule for the token endpoint's
 * `resource` and for the `audiences` an agent is registered with.
 */

function isLoopback (hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname)
}

/** Why `target` can't be an audience (naming it `parameter`), or null when it can. */
export function resourceUriProblem (target: string, parameter: string): string | null {
  // URL parsing forgives surrounding white space; an audience must be exactly what was asked for
  if (/\s/.test(target)) return `${parameter} must not contain white space`
  let url: URL
  try {
    url = new URL(target)
  } catch {
    return `${parameter} must be an absolute URI`
  }
  if (url.hash !== '' || target.includes('#')) return `${parameter} must not contain a fragment`
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname))) {
    return `${parameter} must be an https URI (http only for a loopback host)`
  }
  return null
}
