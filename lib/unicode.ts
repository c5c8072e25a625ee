/**
 * Where a parsed body holds a string that is not well-formed Unicode (a lone surrogate, which JSON
 * allows as `\ud800`): null when there is none, else the dotted path of the first. Such a string
 * can't be stored as it was sent — PostgreSQL refuses it in jsonb (the failure of one token
 * request once failed everyone's shared group commit, issue 11 defect 2) and UTF-8 encoding would
 * silently replace it elsewhere — so it is refused at the door.
 */
export function illFormedStringPath (value: unknown, path = 'body'): string | null {
  if (typeof value === 'string') return value.isWellFormed() ? null : path
  if (Array.isArray(value)) {
    for (let index = 0; index < value.length; index += 1) {
      const found = illFormedStringPath(value[index], `${path}.${index}`)
      if (found !== null) return found
    }
    return null
  }
  if (value !== null && typeof value === 'object') {
    for (const [key, inner] of Object.entries(value)) {
      const found = key.isWellFormed() ? illFormedStringPath(inner, `${path}.${key}`) : `${path}.${key}`
      if (found !== null) return found
    }
  }
  return null
}
