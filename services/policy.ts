import { access, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { loadPolicy as loadOpaPolicy } from '@open-policy-agent/opa-wasm'
import { Type, type Static } from 'typebox'
import { Value } from 'typebox/value'
import { PolicyLoadError } from '../lib/errors.js'
import { Scope } from '../schemas/common.js'

/**
 * The authorization decision, as a pure function of the policy and its input (no HTTP here: the
 * policy plugin asks it for every route that names an action). The policy is POLICY_DIR, read once
 * at start: `data/scopes.json` (the policy data) evaluated by the built-in engine (`decide` below),
 * or, when `authz.wasm` is there too, by that OPA policy (policies/authz.rego compiled with
 * `opa build -t wasm -e agentidp/authz/decision`) over the same data and the same input document.
 * A missing, unreadable or invalid policy stops the server from starting: it never runs unguarded;
 * a policy that fails to evaluate denies.
 *
 * Rules (API.md, "Scopes and who may do what"), in this order:
 * 1. a caller that may not even see another agent's resource — it holds none of the rule's
 *    `visibleWith` scopes — gets 404 as if it did not exist, whatever else it holds (so `agents:write`
 *    without `agents:read` is 404 on PATCH as on GET); an agent always sees itself, with a
 *    non-delegated token;
 * 2. a caller that sees it acts with the action's scope, or on itself where the action allows
 *    self-service; otherwise 403;
 * 3. an action that hands out the target's power (`confersCapabilities`: generating or rotating a
 *    secret) also needs that power already: every capability of its own agent (a narrowed token never
 *    mints a full-power secret), or every *platform* capability of another agent (credentials:write
 *    never makes its holder an admin; custom capabilities of another agent are not checked).
 *    Otherwise 403, reason `privilege_escalation`. Step 3 needs the target's capabilities: the caller
 *    passes them read from the row it locked for the change, so a concurrent change can't slip in.
 */
const Rule = Type.Object({
  scope: Type.String({ minLength: 1 }),
  selfService: Type.Optional(Type.Boolean()),
  /** the scopes, any one of which lets a caller see another agent's resource; none given: only itself */
  visibleWith: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
  /** the action hands out a secret (or keys) that carries the target's capabilities */
  confersCapabilities: Type.Optional(Type.Boolean())
}, { additionalProperties: false })

/** A token exchange: the caller (the actor) must be in the `mayAct` of the chain's subject or of the previous actor. */
const DelegationRule = Type.Object({ delegation: Type.Literal(true) }, { additionalProperties: false })

/**
 * The scopes granted to clients identified by a metadata document (a client_id that is an https
 * URL), by the URL's host as `new URL(url).host` spells it: lower case, with its port unless 443.
 * A host not listed has none, and its clients are refused. Never a platform scope: a client that
 * registered itself does not administer the IdP.
 */
const ClientMetadataHosts = Type.Record(Type.String(), Type.Array(Scope, { maxItems: 64, uniqueItems: true }))
/** a host as URL.host spells it (the key of clientMetadataHosts), checked at load: a URL or a capital letter there would never match */
const CLIENT_HOST = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:[0-9]{1,5})?$/

export const PolicyData = Type.Object({
  platformScopes: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
  actions: Type.Record(Type.String({ pattern: '^[a-z]+\\.[a-z]+$' }), Type.Union([Rule, DelegationRule])),
  clientMetadataHosts: Type.Optional(ClientMetadataHosts)
}, { additionalProperties: false })
export type PolicyData = Static<typeof PolicyData>

export interface PolicyInput {
  principal: { agentId: string, scopes: string[], delegated: boolean }
  action: string
  /**
   * the agent acted upon; null for collections and creation. `capabilities` are its current ones,
   * read from its locked row: without them a `confersCapabilities` rule is decided up to step 2 only
   * (the policy plugin's first look, before the handler has read the row), never allowed past it.
   */
  target: { agentId: string, capabilities?: string[] } | null
  /** for a delegation rule: who may act for the chain's subject, and for the previous actor (the subject itself on the first hop) */
  delegation?: { subject: DelegationParty, previous: DelegationParty }
}

export interface DelegationParty { agentId: string, mayAct: string[] }

export const DENIAL_REASONS = ['insufficient_scope', 'not_visible', 'privilege_escalation', 'delegation_refused', 'unknown_action', 'evaluation_error'] as const
export type DenialReason = typeof DENIAL_REASONS[number]

/** `scope`: what the caller lacks, space-separated (RFC 6750's `scope` attribute); null when no scope would help. */
export type Decision =
  | { allow: true }
  | { allow: false, reason: DenialReason, scope: string | null }

/** The built-in engine: a pure function of the policy data and the input document. */
export function decide (data: PolicyData, input: PolicyInput): Decision {
  const rule = data.actions[input.action]
  if (rule === undefined) return { allow: false, reason: 'unknown_action', scope: null }
  if ('delegation' in rule) {
    const actor = input.principal.agentId
    const { delegation } = input
    const allowed = delegation !== undefined && (delegation.subject.mayAct.includes(actor) || delegation.previous.mayAct.includes(actor))
    return allowed ? { allow: true } : { allow: false, reason: 'delegation_refused', scope: null }
  }
  const holds = (scope: string) => input.principal.scopes.includes(scope)
  const { target } = input
  const self = target !== null && target.agentId === input.principal.agentId && !input.principal.delegated
  if (target !== null && !self && !(rule.visibleWith ?? []).some(holds)) {
    return { allow: false, reason: 'not_visible', scope: rule.scope }
  }
  if (!holds(rule.scope) && !(self && rule.selfService === true)) {
    return { allow: false, reason: 'insufficient_scope', scope: rule.scope }
  }
  if (rule.confersCapabilities === true && target?.capabilities !== undefined) {
    const mustHold = self ? target.capabilities : target.capabilities.filter((scope) => data.platformScopes.includes(scope))
    // sorted and without repeats, as the OPA policy's set of missing scopes comes out
    const missing = [...new Set(mustHold.filter((scope) => !holds(scope)))].sort()
    if (missing.length > 0) return { allow: false, reason: 'privilege_escalation', scope: missing.join(' ') }
  }
  return { allow: true }
}

export async function loadPolicyData (policyDir: string): Promise<PolicyData> {
  const path = join(policyDir, 'data', 'scopes.json')
  let parsed: unknown
  try {
    parsed = JSON.parse(await readFile(path, 'utf8'))
  } catch (error) {
    throw new PolicyLoadError(path, (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'is missing' : 'is not readable JSON')
  }
  const problem = [...Value.Errors(PolicyData, parsed)][0]
  if (problem !== undefined) throw new PolicyLoadError(path, `is invalid at ${problem.instancePath || '/'}: ${problem.message}`)
  const data = parsed as PolicyData
  for (const [host, scopes] of Object.entries(data.clientMetadataHosts ?? {})) {
    if (!CLIENT_HOST.test(host) || host.length > 123) throw new PolicyLoadError(path, `is invalid at /clientMetadataHosts: "${host}" is not a host as a URL spells it (lower case, a port only when not 443)`)
    const platform = scopes.filter((scope) => data.platformScopes.includes(scope))
    if (platform.length > 0) throw new PolicyLoadError(path, `grants platform scopes to the client metadata host ${host}: ${platform.join(' ')}`)
  }
  return data
}

/** The scopes the policy grants to clients whose metadata document is on `host` (URL.host); none when not listed. */
export function scopesForClientHost (data: PolicyData, host: string): string[] {
  const hosts = data.clientMetadataHosts ?? {}
  return Object.hasOwn(hosts, host) ? [...hosts[host]] : []
}

/** Whatever evaluates the rules: the built-in engine or an OPA wasm policy. */
export interface PolicyEngine {
  readonly kind: 'builtin' | 'wasm'
  decide (input: PolicyInput): Decision
}

export function builtinEngine (data: PolicyData): PolicyEngine {
  return { kind: 'builtin', decide: (input) => decide(data, input) }
}

/** The entrypoint authz.wasm must export: `{allow, reason, scope}` as `decide` returns it. */
export const WASM_ENTRYPOINT = 'agentidp/authz/decision'
export const WASM_FILE = 'authz.wasm'

/** What this plugin needs of @open-policy-agent/opa-wasm's LoadedPolicy (a seam for tests). */
export interface LoadedWasmPolicy {
  entrypoints: Record<string, number>
  setData (data: object): void
  evaluate (input: unknown, entrypoint?: string): unknown
}

/** How authz.wasm becomes a LoadedWasmPolicy: @open-policy-agent/opa-wasm, replaceable by tests (no `opa` here to build a real one). */
export const wasmRuntime = {
  load: async (bytes: Buffer): Promise<LoadedWasmPolicy> => await loadOpaPolicy(bytes) as unknown as LoadedWasmPolicy
}

/** OPA's result set `[{result: {allow, reason, scope}}]` as a Decision; anything else throws. */
function toDecision (resultSet: unknown): Decision {
  const result = Array.isArray(resultSet) && resultSet.length === 1 ? (resultSet[0] as { result?: unknown }).result : undefined
  const { allow, reason, scope } = (result ?? {}) as { allow?: unknown, reason?: unknown, scope?: unknown }
  if (allow === true) return { allow: true }
  if (allow === false && DENIAL_REASONS.includes(reason as DenialReason)) {
    return { allow: false, reason: reason as DenialReason, scope: typeof scope === 'string' ? scope : null }
  }
  throw new Error('the policy returned no decision of the expected shape')
}

/**
 * The OPA wasm engine over a loaded policy. Its data document is the same scopes.json; a policy
 * without the entrypoint, that rejects the data, or that can't decide a probe refuses to start.
 */
export function wasmEngine (loaded: LoadedWasmPolicy, data: PolicyData, path: string, onError: (error: unknown) => void = () => {}): PolicyEngine {
  if (loaded.entrypoints === undefined || !(WASM_ENTRYPOINT in loaded.entrypoints)) {
    throw new PolicyLoadError(path, `has no ${WASM_ENTRYPOINT} entrypoint (build it with opa build -t wasm -e ${WASM_ENTRYPOINT})`)
  }
  try {
    loaded.setData(data)
  } catch {
    throw new PolicyLoadError(path, 'rejects the policy data')
  }
  const engine: PolicyEngine = {
    kind: 'wasm',
    decide (input) {
      try {
        return toDecision(loaded.evaluate(input, WASM_ENTRYPOINT))
      } catch (error) {
        onError(error)
        return { allow: false, reason: 'evaluation_error', scope: null }
      }
    }
  }
  const probe = engine.decide({ principal: { agentId: '00000000-0000-4000-8000-000000000000', scopes: [], delegated: false }, action: Object.keys(data.actions)[0] ?? 'none', target: null })
  if (!probe.allow && probe.reason === 'evaluation_error') throw new PolicyLoadError(path, 'fails to evaluate')
  return engine
}

async function exists (path: string): Promise<boolean> {
  try {
    await access(path)
    return true
  } catch {
    return false
  }
}

/** The policy of POLICY_DIR: its data, and the engine that evaluates it (wasm when authz.wasm is there). */
export async function loadPolicy (policyDir: string, onError?: (error: unknown) => void): Promise<{ data: PolicyData, engine: PolicyEngine }> {
  const data = await loadPolicyData(policyDir)
  const path = join(policyDir, WASM_FILE)
  if (!await exists(path)) return { data, engine: builtinEngine(data) }
  let bytes: Buffer
  try {
    bytes = await readFile(path)
  } catch {
    throw new PolicyLoadError(path, 'is not readable')
  }
  let loaded: LoadedWasmPolicy
  try {
    loaded = await wasmRuntime.load(bytes)
  } catch {
    throw new PolicyLoadError(path, 'is not a valid OPA WebAssembly policy')
  }
  return { data, engine: wasmEngine(loaded, data, path, onError) }
}
