/**
 * The names given more than once in a JSON object's top level. JSON.parse keeps the last of
 * repeated names silently; RFC 6749 §3.2 makes a repeated parameter an error, and the form-encoded
 * OAuth bodies already refuse one, so the JSON spelling must too (issue 11, defect 12) — otherwise
 * what a proxy or a log inspected (the first) and what the server used (the last) could differ.
 */
export function repeatedTopLevelNames (text: string): string[] {
  if (!text.trimStart().startsWith('{')) return []
  const seen = new Set<string>()
  const repeated = new Set<string>()
  let depth = 0
  let expectName = false
  for (let index = 0; index < text.length; index += 1) {
    const char = text[index]
    if (char === '"') {
      let end = index + 1
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1
      if (depth === 1 && expectName) {
        let name: unknown
        try {
          name = JSON.parse(text.slice(index, end + 1))
        } catch {
          return []
        }
        if (seen.has(name as string)) repeated.add(name as string)
        seen.add(name as string)
        expectName = false
      }
      index = end
    } else if (char === '{' || char === '[') {
      depth += 1
      expectName = char === '{' && depth === 1
    } else if (char === '}' || char === ']') {
      depth -= 1
    } else if (char === ',' && depth === 1) {
      expectName = true
    }
  }
  return [...repeated]
}
