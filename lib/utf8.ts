/**
 * A request body's bytes as text, only when they are UTF-8. Fastify's parsers decode with
 * replacement: a body in Latin-1, or with a CESU-8 surrogate, would have its bad bytes turned into
 * U+FFFD and be stored as something the caller never sent (seen by the issue 11 resilience suite:
 * an owner sent as `x` + CESU-8 `\ud800` was stored as `x���`). Null means: refuse it with a 400.
 */
const strictDecoder = new TextDecoder('utf-8', { fatal: true })

export function utf8Text (bytes: Buffer): string | null {
  try {
    return strictDecoder.decode(bytes)
  } catch {
    return null
  }
}
