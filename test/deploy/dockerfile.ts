import { readFileSync } from 'node:fs'

/**
 * A small Dockerfile parser: enough of the reference syntax for the checks in test/deploy
 * (parser directives, comments, line continuations, exec and shell forms, instruction flags,
 * global ARGs in FROM). Not a general BuildKit front end: heredocs are not supported.
 */

export interface Instruction {
  keyword: string
  /** the arguments after the flags, as written (continuations joined with a space) */
  args: string
  /** leading `--name=value` flags (RUN --mount, COPY --from, HEALTHCHECK --interval, …) */
  flags: Record<string, string>
  /** the exec form, when args is a JSON array of strings */
  exec: string[] | null
  line: number
}

export interface Stage {
  index: number
  name: string | null
  /** the image after ARG substitution */
  image: string
  instructions: Instruction[]
}

export interface Dockerfile {
  directives: Record<string, string>
  /** ARGs declared before the first FROM, with their defaults */
  globalArgs: Record<string, string | undefined>
  stages: Stage[]
  /** every comment line, without the leading # */
  comments: string[]
}

export function parseDockerfile (source: string, buildArgs: Record<string, string> = {}): Dockerfile {
  const lines = source.split(/\r?\n/)
  const directives: Record<string, string> = {}
  const comments: string[] = []
  const logical: Array<{ text: string, line: number }> = []

  let index = 0
  // parser directives: `# key=value` lines before anything else
  for (; index < lines.length; index++) {
    const match = /^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$/.exec(lines[index])
    if (match === null) break
    directives[match[1].toLowerCase()] = match[2]
  }

  let buffer = ''
  let startLine = 0
  for (; index < lines.length; index++) {
    const raw = lines[index]
    const trimmed = raw.trim()
    if (trimmed.startsWith('#')) {
      comments.push(trimmed.slice(1).trim())
      continue // comment lines are removed, even inside a continuation
    }
    if (buffer === '' && trimmed === '') continue
    if (buffer === '') startLine = index + 1
    if (trimmed.endsWith('\\')) {
      buffer += trimmed.slice(0, -1).trim() + ' '
      continue
    }
    buffer += trimmed
    if (buffer.trim() !== '') logical.push({ text: buffer.trim(), line: startLine })
    buffer = ''
  }
  if (buffer.trim() !== '') logical.push({ text: buffer.trim(), line: startLine })

  const globalArgs: Record<string, string | undefined> = {}
  const stages: Stage[] = []
  for (const { text, line } of logical) {
    const instruction = parseInstruction(text, line)
    if (instruction.keyword === 'FROM') {
      const words = instruction.args.split(/\s+/)
      const image = substitute(words[0], { ...globalArgs, ...buildArgs })
      const name = words.length >= 3 && words[1].toUpperCase() === 'AS' ? words[2] : null
      stages.push({ index: stages.length, name, image, instructions: [] })
      continue
    }
    if (stages.length === 0) {
      if (instruction.keyword !== 'ARG') throw new Error(`line ${line}: ${instruction.keyword} before the first FROM`)
      const [key, ...value] = instruction.args.split('=')
      globalArgs[key.trim()] = value.length === 0 ? undefined : unquote(value.join('='))
      continue
    }
    stages[stages.length - 1].instructions.push(instruction)
  }
  return { directives, globalArgs, stages, comments }
}

export function readDockerfile (path: string): Dockerfile {
  return parseDockerfile(readFileSync(path, 'utf8'))
}

function parseInstruction (text: string, line: number): Instruction {
  const match = /^(\S+)\s*([\s\S]*)$/.exec(text)
  if (match === null) throw new Error(`line ${line}: cannot parse "${text}"`)
  const keyword = match[1].toUpperCase()
  let rest = match[2]
  const flags: Record<string, string> = {}
  for (;;) {
    const flag = /^--([a-zA-Z-]+)(?:=(\S*))?\s*/.exec(rest)
    if (flag === null) break
    flags[flag[1]] = flag[2] ?? 'true'
    rest = rest.slice(flag[0].length)
  }
  return { keyword, args: rest, flags, exec: execForm(rest), line }
}

function execForm (args: string): string[] | null {
  if (!args.startsWith('[')) return null
  try {
    const parsed: unknown = JSON.parse(args)
    return Array.isArray(parsed) && parsed.every((item) => typeof item === 'string') ? parsed : null
  } catch {
    return null
  }
}

function unquote (value: string): string {
  const trimmed = value.trim()
  return /^(["']).*\1$/.test(trimmed) ? trimmed.slice(1, -1) : trimmed
}

/** `$VAR`, `${VAR}`, `${VAR:-default}` with the given values. */
export function substitute (value: string, values: Record<string, string | undefined>): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (_all, braced: string | undefined, fallback: string | undefined, bare: string | undefined) => {
      const found = values[braced ?? bare ?? '']
      return found !== undefined && found !== '' ? found : (fallback ?? '')
    })
}

/** ENV instructions of a stage as one map (`ENV A=1 B=2` and the legacy `ENV A 1`). */
export function stageEnv (stage: Stage): Record<string, string> {
  const env: Record<string, string> = {}
  for (const instruction of stage.instructions.filter((entry) => entry.keyword === 'ENV')) {
    if (!instruction.args.includes('=')) {
      const [key, ...value] = instruction.args.split(/\s+/)
      env[key] = value.join(' ')
      continue
    }
    for (const pair of instruction.args.match(/[A-Za-z_][A-Za-z0-9_]*=("[^"]*"|'[^']*'|\S*)/g) ?? []) {
      const at = pair.indexOf('=')
      env[pair.slice(0, at)] = unquote(pair.slice(at + 1))
    }
  }
  return env
}

/** The sources and destination of a COPY/ADD (shell or exec form). */
export function copyPaths (instruction: Instruction): { sources: string[], destination: string } {
  const parts = instruction.exec ?? instruction.args.split(/\s+/).filter(Boolean)
  if (parts.length < 2) throw new Error(`line ${instruction.line}: ${instruction.keyword} needs a source and a destination`)
  return { sources: parts.slice(0, -1), destination: parts[parts.length - 1] }
}

/** The directory a stage's WORKDIR instructions leave before instruction `before` (default: the end). */
export function workdirAt (stage: Stage, before: Instruction | null = null): string {
  let directory = '/'
  for (const instruction of stage.instructions) {
    if (instruction === before) break
    if (instruction.keyword !== 'WORKDIR') continue
    const path = instruction.args.trim()
    directory = path.startsWith('/') ? path : `${directory.replace(/\/$/, '')}/${path}`
  }
  return directory
}

/** Numeric comparison of dotted versions: -1, 0 or 1. */
export function compareVersions (a: string, b: string): number {
  const left = a.split('.').map(Number)
  const right = b.split('.').map(Number)
  for (let index = 0; index < Math.max(left.length, right.length); index++) {
    const difference = (left[index] ?? 0) - (right[index] ?? 0)
    if (difference !== 0) return Math.sign(difference)
  }
  return 0
}
