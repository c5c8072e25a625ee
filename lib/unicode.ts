/**
 * Where a parsed body holds a string that is not well-formed Unicode (a lone surrogate, which JSON
 * allows as `\ud800`): null when there is none, else the dotted path of the first. Such a string
 * can't be stored as it was sent — PostgreSQL refuses it in jsonb (the failure of one token
 * request once failed everyone's shared group commit, issue 11 defect 2) and UTF-8 encoding would
 * silently replace it elsewhere — so it is refused at the door.
 */
export function illFormedStringPath (value: unknown, path = 'body'): string | null {
  // an explicit stack, not recursion: a body nested 20,000 deep (well under the body limit) would
  // overflow the call stack, a 500 instead of the 400 its schema earns (issue 11 resilience suite)
  // (a name that is not well-formed is queued as a finding of its own, so the order stays that of the document)
  const pending: Array<{ value: unknown, where: string, badName?: true }> = [{ value, where: path }]
  while (pending.length > 0) {
    const { value: current, where, badName } = pending.pop() as { value: unknown, where: string, badName?: true }
    if (badName === true) return where
    if (typeof current === 'string') {
      if (!current.isWellFormed()) return where
    } else if (current !== null && typeof current === 'object') {
      const members = Array.isArray(current) ? current.map((item, index) => [String(index), item] as const) : Object.entries(current)
      // pushed in reverse: the first member is looked at first
      for (let index = members.length - 1; index >= 0; index -= 1) {
        const [key, inner] = members[index]
        pending.push(key.isWellFormed() ? { value: inner, where: `${where}.${key}` } : { value: undefined, where: `${where}.${key}`, badName: true })
      }
    }
  }
  return null
}
