/**
 * The management API as an OAuth protected resource (RFC 9728): where its metadata document lives,
 * and the DPoP proof algorithms (RFC 9449) it lists. A leaf, so that the discovery route, the error
 * renderer (the 401 challenge's `resource_metadata`) and the DPoP work share one spelling.
 */

/** RFC 9728 §3: the well-known suffix of the protected resource metadata. */
export const PROTECTED_RESOURCE_METADATA_PATH = '/.well-known/oauth-protected-resource'

/** The JWS algorithms a DPoP proof may be signed with (RFC 9449 §5.1 `dpop_signing_alg_values_supported`). */
export const DPOP_ALGORITHMS = ['RS256', 'ES256', 'EdDSA', 'Ed25519', 'PS256'] as const

/**
 * The URL a 401 names in `resource_metadata` (RFC 9728 §5.1): the issuer followed by the well-known
 * path, like every other URL of this server (with an ISSUER_URL that has a path, the RFC 9728 §3.1
 * form is served as well).
 */
export function protectedResourceMetadataUrl (issuer: string): string {
  return `${issuer.replace(/\/+$/, '')}${PROTECTED_RESOURCE_METADATA_PATH}`
}
