# AgentIdP authorization, as an OPA policy: the same rules as the built-in engine
# (plugins/policy.ts, `decide`), over the same data (data/scopes.json) and the same input.
#
# This file is the source of POLICY_DIR/authz.wasm. Build it with OPA (v0.59 or later, v1.x):
#
#   opa build -t wasm -e agentidp/authz/decision -e agentidp/authz/allow policies/authz.rego
#   tar -xzf bundle.tar.gz /policy.wasm && mv policy.wasm "$POLICY_DIR/authz.wasm"
#
# and keep data/scopes.json beside it: the server passes it to the policy as `data` (it is not
# compiled in, so changing who may do what stays a data change). With authz.wasm present the server
# evaluates `decision` for every authorization; without it, the built-in engine decides.
#
# input: {
#   "principal": {"agentId": "<uuid>", "scopes": ["agents:read", ...], "delegated": false},
#   "action":    "agents.update",
#   "target":    {"agentId": "<uuid>"} | null
# }
# data:  {"platformScopes": [...], "actions": {"<action>": {"scope", "selfService"?, "visibleWith"?}}}
#
# decision: {"allow": true} or {"allow": false, "reason": R, "scope": S} where R is
#   "unknown_action"     the action is not in data.actions (scope null)
#   "not_visible"        another agent's resource the caller may not even see: answered 404
#   "insufficient_scope" the caller lacks the action's scope: answered 403
package agentidp.authz

import rego.v1

rule := data.actions[input.action]

holds(scope) if scope in input.principal.scopes

# a non-delegated token acting on its own agent
self if {
	input.target != null
	input.target.agentId == input.principal.agentId
	input.principal.delegated == false
}

visible if {
	some scope in object.get(rule, "visibleWith", [])
	holds(scope)
}

default decision := {"allow": false, "reason": "unknown_action", "scope": null}

decision := {"allow": true} if {
	holds(rule.scope)
} else := {"allow": true} if {
	rule
	self
	object.get(rule, "selfService", false) == true
} else := {"allow": false, "reason": "not_visible", "scope": rule.scope} if {
	rule
	input.target != null
	not self
	not visible
} else := {"allow": false, "reason": "insufficient_scope", "scope": rule.scope} if {
	rule
}

default allow := false

allow := decision.allow
