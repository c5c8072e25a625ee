/**
 * JWT times are whole seconds but an agent's "valid after" instant (set on suspension or
 * decommissioning) has millisecond precision. A token is dead when it was issued before the
 * first whole second at or after that instant; the token endpoint therefore never stamps a new
 * token earlier than that second, so a token issued after reactivation is never mistaken for an
 * old one.
 */
export function validAfterSecond (validAfterMs: number): number {
  return Math.ceil(validAfterMs / 1000)
}

export function issuedBeforeValidAfter (iatSeconds: number, validAfterMs: number): boolean {
  return iatSeconds < validAfterSecond(validAfterMs)
}

/** The `iat` for a token issued now to an agent with this "valid after" instant. */
export function issueSecond (nowMs: number, validAfterMs: number): number {
  return Math.max(Math.floor(nowMs / 1000), validAfterSecond(validAfterMs))
}
