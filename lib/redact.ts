/**
 * The last step before a log line is written: secrets are blanked wherever they are in the line.
 * Two nets:
 *  - by key, at any depth: the value of any key naming a secret (authorization, cookie, client_secret,
 *    access_token, token, password, …, in any case, with `_`/`-` or camelCase) becomes "[redacted]",
 *    whatever its type;
 *  - by shape, anywhere (messages, stacks, URLs, values under innocent keys): client secrets
 *    (`sk_live_…`), JWTs and the credentials of Basic/Bearer authorization values.
 * It works on pino's finished JSON line rather than through pino's `redact` paths: wildcard paths
 * cost ~25 µs per line and per depth level here, and still reach only the depths listed; this pass
 * costs a few µs and reaches every depth.
 */

// a key naming a secret, once lower-cased and stripped of `_` and `-`
const SECRET_KEY = /(?:token|tokens|secret|secrets|secrethash|password|passwd|authorization|cookie|cookies|apikey|privatekey|databaseurl|redisurl)$/
const SUSPECT = /token|secret|passw|authoriz|cookie|api.?key|private.?key|_url"|sk_live_|eyJ|basic |bearer |%[0-9a-f]{2}/i
// a key in JSON text: a string right after `{` or `,` and followed by `:`; inside a string value
// every quote is escaped, so this cannot match there
const KEY = /(?<=[{,])"((?:[^"\\]|\\.)*)":/g
const SHAPES: Array<[RegExp, string]> = [
  [/sk_live_[A-Za-z0-9_-]+/g, 'sk_live_[redacted]'],
  [/eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*/g, '[redacted-jwt]'],
  [/\b(Basic|Bearer) +[A-Za-z0-9._~+/=-]+/gi, '$1 [redacted]']
]
const REDACTED = '"[redacted]"'

/** Where the JSON value starting at `start` ends (exclusive). */
function valueEnd (line: string, start: number): number {
  let depth = 0
  let index = start
  while (index < line.length) {
    const char = line[index]
    if (char === '"') {
      index += 1
      while (index < line.length && line[index] !== '"') index += line[index] === '\\' ? 2 : 1
    } else if (char === '{' || char === '[') {
      depth += 1
    } else if (char === '}' || char === ']') {
      if (depth === 0) return index
      depth -= 1
    } else if (char === ',' && depth === 0) {
      return index
    }
    index += 1
    if (depth === 0 && (char === '"' || char === '}' || char === ']')) return index
  }
  return index
}

function isSecretKey (key: string): boolean {
  return SECRET_KEY.test(key.toLowerCase().replace(/[_-]/g, ''))
}

function redactKeys (line: string): string {
  let output = ''
  let copied = 0
  KEY.lastIndex = 0
  for (let match = KEY.exec(line); match !== null; match = KEY.exec(line)) {
    if (!isSecretKey(match[1])) continue
    const start = match.index + match[0].length
    const end = valueEnd(line, start)
    output += line.slice(copied, start) + REDACTED
    copied = end
    KEY.lastIndex = end
  }
  return copied === 0 ? line : output + line.slice(copied)
}

/** A run of URL characters with percent-escapes in it: the shapes above may hide there, encoded. */
const ENCODED_RUN = /[A-Za-z0-9._~+/=-]*(?:%[0-9A-Fa-f]{2}[A-Za-z0-9._~+/=-]*)+/g
const HIDDEN = /sk_live_|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\./

/**
 * A request line's URL is logged as sent: `/api/v1/agents/%73%6B%5F%6C…` is a client secret to
 * anyone who decodes it (found by test/resilience/secret-hygiene.test.ts). A percent-encoded run
 * that decodes to a secret or a token is blanked whole.
 */
function redactEncoded (line: string): string {
  return line.replace(ENCODED_RUN, (run) => {
    // byte by byte: a secret is ASCII, and a run that is not UTF-8 must not make decoding throw
    const decoded = run.replace(/%([0-9A-Fa-f]{2})/g, (_, hex: string) => String.fromCharCode(Number.parseInt(hex, 16)))
    return HIDDEN.test(decoded) ? '[redacted-encoded]' : run
  })
}

/** One serialized log line (pino's `hooks.streamWrite`), with its secrets blanked. */
export function redactLine (line: string): string {
  if (!SUSPECT.test(line)) return line
  let redacted = redactKeys(line)
  for (const [shape, replacement] of SHAPES) redacted = redacted.replace(shape, replacement)
  return redacted.includes('%') ? redactEncoded(redacted) : redacted
}
