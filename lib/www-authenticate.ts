/**
 * WWW-Authenticate (RFC 9110 §11.6.1): one more auth-param on the challenges of given schemes,
 * e.g. RFC 9728 §5.1's `resource_metadata` on every Bearer or DPoP challenge of a 401. A pure
 * helper: the header is split into its challenges at the commas outside quoted strings.
 */

// RFC 9110 §5.6.2 token, then "=": an element that is an auth-param of the challenge before it
const AUTH_PARAM = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+[ \t]*=/
const SCHEME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/

/** The comma-separated elements of a header value, commas inside quoted strings kept. */
function elements (header: string): string[] {
  const found: string[] = []
  let current = ''
  let quoted = false
  for (let index = 0; index < header.length; index += 1) {
    const char = header[index]
    if (quoted && char === '\\') {
      current += char + (header[index + 1] ?? '')
      index += 1
      continue
    }
    if (char === '"') quoted = !quoted
    if (char === ',' && !quoted) {
      found.push(current.trim())
      current = ''
      continue
    }
    current += char
  }
  found.push(current.trim())
  return found.filter((element) => element !== '')
}

function quote (value: string): string {
  return `"${value.replace(/[\\"]/g, (char) => `\\${char}`)}"`
}

/**
 * `header` with `name="value"` on each challenge whose scheme is one of `schemes` (case-insensitive)
 * and that does not carry `name` yet; no header at all: a challenge of the first scheme.
 */
export function withChallengeParameter (header: string | undefined, schemes: readonly string[], name: string, value: string): string {
  const parameter = `${name}=${quote(value)}`
  if (header === undefined || header.trim() === '') return `${schemes[0]} ${parameter}`
  const challenges: Array<{ head: string, params: string[] }> = []
  for (const element of elements(header)) {
    const last = challenges.at(-1)
    if (last !== undefined && AUTH_PARAM.test(element)) last.params.push(element)
    else challenges.push({ head: element, params: [] })
  }
  const wanted = new Set(schemes.map((scheme) => scheme.toLowerCase()))
  const names = (param: string) => param.toLowerCase().startsWith(`${name.toLowerCase()}=`)
  return challenges.map(({ head, params }) => {
    const scheme = SCHEME.exec(head)?.[0] ?? ''
    const first = head.slice(scheme.length).trim()
    if (!wanted.has(scheme.toLowerCase()) || names(first) || params.some(names)) return [head, ...params].join(', ')
    // a lone scheme takes the parameter after a space, a challenge with parameters after a comma
    return first === '' ? [`${head} ${parameter}`, ...params].join(', ') : [head, ...params, parameter].join(', ')
  }).join(', ')
}
