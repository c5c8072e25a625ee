import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, posix, relative, sep } from 'node:path'
import { parse } from '@cdktf/hcl2json'

/**
 * Structural checks of a Terraform tree that need no provider: it is parsed with @cdktf/hcl2json
 * (HashiCorp's HCL parser compiled to wasm), one module per directory. Expressions come back as
 * "${…}" strings, which is where variable references are looked for (never in comments or plain
 * string literals).
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json }
type Block = Record<string, Json>

export interface TfModule {
  /** directory relative to the tree's root, with forward slashes ("modules/rds/aws") */
  dir: string
  files: Array<{ name: string, text: string }>
  /** every file's JSON merged: { variable: {name: [block]}, module: {…}, resource: {type: {name: [block]}}, … } */
  json: Record<string, Json>
}

export interface Variable { name: string, block: Block, required: boolean }

/** Every directory below `root` holding .tf files, parsed. */
export async function loadTree (root: string): Promise<Map<string, TfModule>> {
  const modules = new Map<string, TfModule>()
  const visit = async (directory: string) => {
    const entries = readdirSync(directory).sort()
    const tfFiles = entries.filter((entry) => entry.endsWith('.tf') && statSync(join(directory, entry)).isFile())
    if (tfFiles.length > 0) {
      const files = tfFiles.map((name) => ({ name, text: readFileSync(join(directory, name), 'utf8') }))
      const dir = relative(root, directory).split(sep).join('/') || '.'
      modules.set(dir, await parseModule(dir, files))
    }
    for (const entry of entries) {
      if (entry.startsWith('.')) continue // .terraform/ caches
      const path = join(directory, entry)
      if (statSync(path).isDirectory()) await visit(path)
    }
  }
  await visit(root)
  return modules
}

export async function parseModule (dir: string, files: Array<{ name: string, text: string }>): Promise<TfModule> {
  const json: Record<string, Json> = {}
  for (const file of files) {
    const parsed = await parse(`${dir}/${file.name}`, file.text) as Record<string, Json>
    for (const [kind, value] of Object.entries(parsed)) json[kind] = mergeBlocks(json[kind], value)
  }
  return { dir, files, json }
}

function mergeBlocks (left: Json | undefined, right: Json): Json {
  if (left === undefined) return right
  if (Array.isArray(left) && Array.isArray(right)) return [...left, ...right]
  if (isObject(left) && isObject(right)) {
    const merged: Record<string, Json> = { ...left }
    for (const [key, value] of Object.entries(right)) merged[key] = mergeBlocks(merged[key], value)
    return merged
  }
  return right
}

function isObject (value: Json | undefined): value is { [key: string]: Json } {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

/** name => first block, for block kinds keyed by one label (variable, output, module). */
function labelled (module: TfModule, kind: string): Map<string, Block> {
  const section = module.json[kind]
  const result = new Map<string, Block>()
  if (!isObject(section)) return result
  for (const [name, blocks] of Object.entries(section)) {
    const block = Array.isArray(blocks) ? blocks[0] : blocks
    if (isObject(block)) result.set(name, block)
  }
  return result
}

export function variables (module: TfModule): Variable[] {
  return [...labelled(module, 'variable')].map(([name, block]) => ({ name, block, required: !('default' in block) }))
}

export function outputs (module: TfModule): Map<string, Block> {
  return labelled(module, 'output')
}

export function moduleCalls (module: TfModule): Array<{ name: string, source: string, args: Block }> {
  return [...labelled(module, 'module')].map(([name, block]) => ({ name, source: String(block.source), args: block }))
}

/** Resources of one type: name => block. */
export function resources (module: TfModule, type: string): Map<string, Block> {
  const section = module.json.resource
  const result = new Map<string, Block>()
  if (!isObject(section) || !isObject(section[type])) return result
  for (const [name, blocks] of Object.entries(section[type])) {
    const block = Array.isArray(blocks) ? blocks[0] : blocks
    if (isObject(block)) result.set(name, block)
  }
  return result
}

/** Every string in a JSON value, with the path of keys leading to it. */
function * strings (value: Json, path: string[] = []): Generator<{ path: string[], value: string }> {
  if (typeof value === 'string') yield { path, value }
  else if (Array.isArray(value)) for (const item of value) yield * strings(item, path)
  else if (isObject(value)) for (const [key, item] of Object.entries(value)) yield * strings(item, [...path, key])
}

/** Names X of every `var.X` used in the module's expressions. */
export function referencedVariables (module: TfModule): Set<string> {
  const found = new Set<string>()
  for (const { value } of strings(module.json)) {
    if (!value.includes('${')) continue
    for (const match of value.matchAll(/(?<![\w.])var\.([A-Za-z_][A-Za-z0-9_-]*)/g)) found.add(match[1])
  }
  return found
}

const META_ARGUMENTS = new Set(['source', 'version', 'providers', 'depends_on', 'count', 'for_each'])
/** Attributes that hold a credential: their value must be computed, never a literal. */
const SECRET_ATTRIBUTE = /^(password|master_password|passwd|auth_token|auth_string|secret_string|secret_data|secret_binary|private_key|client_secret|access_key|secret_key|api_key|token)$/i
/** Variables named like a credential must not carry a literal default. */
const SECRET_VARIABLE = /(password|passwd|secret|auth_token|auth_string|api_key|access_key|private_key)$/i
/** Credentials recognisable by their shape, wherever they appear. */
const SECRET_SHAPES: Array<[RegExp, string]> = [
  [/-----BEGIN (RSA |EC |OPENSSH |ENCRYPTED )?PRIVATE KEY-----/, 'a PEM private key'],
  [/\bAKIA[0-9A-Z]{16}\b/, 'an AWS access key id'],
  [/\bsk_live_[A-Za-z0-9_-]{20,}/, 'an AgentIdP client secret'],
  [/\bgh[pousr]_[A-Za-z0-9]{30,}/, 'a GitHub token'],
  [/\b(postgres(ql)?|rediss?):\/\/[^:@\s/]*:[^@\s$]+@/, 'a connection URL with a literal password']
]

export interface TreeProblems {
  undeclared: string[]
  calls: string[]
  undocumented: string[]
  secrets: string[]
}

/** All the structural problems of a parsed tree. */
export function checkTree (modules: Map<string, TfModule>): TreeProblems {
  const problems: TreeProblems = { undeclared: [], calls: [], undocumented: [], secrets: [] }

  for (const module of modules.values()) {
    const declared = new Map(variables(module).map((variable) => [variable.name, variable]))

    for (const name of referencedVariables(module)) {
      if (!declared.has(name)) problems.undeclared.push(`${module.dir}: var.${name} is used but not declared`)
    }

    for (const variable of declared.values()) {
      if (variable.block.type === undefined) problems.undocumented.push(`${module.dir}: variable "${variable.name}" has no type`)
      if (typeof variable.block.description !== 'string' || variable.block.description.trim() === '') {
        problems.undocumented.push(`${module.dir}: variable "${variable.name}" has no description`)
      }
      const fallback = variable.block.default
      const literalDefault = typeof fallback === 'string' && fallback !== '' && !fallback.includes('${')
      if (variable.block.sensitive === true && 'default' in variable.block && fallback !== null) {
        problems.secrets.push(`${module.dir}: sensitive variable "${variable.name}" has a default`)
      } else if (SECRET_VARIABLE.test(variable.name) && literalDefault) {
        problems.secrets.push(`${module.dir}: variable "${variable.name}" has a literal default`)
      }
    }

    for (const [name, block] of outputs(module)) {
      if (typeof block.description !== 'string' || block.description.trim() === '') {
        problems.undocumented.push(`${module.dir}: output "${name}" has no description`)
      }
    }

    for (const call of moduleCalls(module)) {
      if (!call.source.startsWith('.')) continue // registry modules are not in the tree
      const target = posix.normalize(posix.join(module.dir, call.source))
      const callee = modules.get(target)
      if (callee === undefined) {
        problems.calls.push(`${module.dir}: module "${call.name}" has source ${call.source}, which is not a module of the tree`)
        continue
      }
      const calleeVariables = new Map(variables(callee).map((variable) => [variable.name, variable]))
      const passed = Object.keys(call.args).filter((key) => !META_ARGUMENTS.has(key))
      for (const key of passed) {
        if (!calleeVariables.has(key)) problems.calls.push(`${module.dir}: module "${call.name}" passes ${key}, which ${target} does not declare`)
      }
      for (const variable of calleeVariables.values()) {
        if (variable.required && !passed.includes(variable.name)) {
          problems.calls.push(`${module.dir}: module "${call.name}" does not pass ${variable.name}, which ${target} requires`)
        }
      }
    }

    for (const { path, value } of strings(module.json)) {
      const key = path.at(-1) ?? ''
      if (path[0] !== 'variable' && SECRET_ATTRIBUTE.test(key) && value !== '' && !value.includes('${')) {
        problems.secrets.push(`${module.dir}: ${path.join('.')} is a literal`)
      }
    }
    for (const file of module.files) {
      for (const [shape, what] of SECRET_SHAPES) {
        if (shape.test(file.text)) problems.secrets.push(`${module.dir}/${file.name} contains ${what}`)
      }
    }
  }
  return problems
}
