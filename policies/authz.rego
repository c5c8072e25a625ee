# AgentIdP authorization, as an OPA policy: the same rules as the built-in engine
# (services/policy.ts, `decide`), over the same data (data/scopes.json) and the same input.
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
#   "target":    {"agentId": "<uuid>", "capabilities"?: ["docs:read", ...]} | null,
#   "delegation"?: {"subject": {"agentId", "mayAct": [...]}, "previous": {"agentId", "mayAct": [...]}}
# }
# `target.capabilities` (the target's current capabilities, from the row the handler locked) is
# given only on the second look at an action whose rule says `confersCapabilities`.
# `delegation` is given for a token exchange (action "tokens.exchange"): who may act for the chain's
# subject, and for the previous actor (the subject itself on the first hop).
# data:  {"platformScopes": [...], "actions": {"<action>": {"scope", "selfService"?, "visibleWith"?, "confersCapabilities"?} | {"delegation": true}}}
#        and "clientMetadataHosts"?: {"<host>": ["scope", ...]}: the scopes of clients identified by a
#        metadata document (an https client_id) on that host. The server reads it from the data itself
#        (app.policy.scopesForClientHost) at the token endpoint; this policy does not decide it.
#
# decision: {"allow": true} or {"allow": false, "reason": R, "scope": S} where R is, checked in this order,
#   "unknown_action"       the action is not in data.actions (scope null)
#   "delegation_refused"   a delegation rule: the caller is in neither mayAct list (scope null)
#   "not_visible"          another agent's resource the caller holds none of the visibleWith scopes
#                          for: answered 404, whatever else it holds
#   "insufficient_scope"   the caller lacks the action's scope (and self-service does not apply): 403
#   "privilege_escalation" the action hands out the target's power and the caller lacks part of it:
#                          every capability of its own agent, every platform capability of another
#                          (custom ones of another agent are not checked); S = the missing scopes,
#                          sorted, space-separated: 403
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

visible if self

visible if {
	some scope in object.get(rule, "visibleWith", [])
	holds(scope)
}

permitted if holds(rule.scope)

permitted if {
	self
	object.get(rule, "selfService", false) == true
}

confers if object.get(rule, "confersCapabilities", false) == true

# what a secret of the target carries that the caller must already hold
must_hold contains scope if {
	confers
	self
	some scope in input.target.capabilities
}

must_hold contains scope if {
	confers
	not self
	some scope in input.target.capabilities
	scope in data.platformScopes
}

missing := sort([scope | some scope in must_hold; not holds(scope)])

# a token exchange: the actor must be named by the chain's subject or by the previous actor
delegation_rule if object.get(rule, "delegation", false) == true

may_act if input.principal.agentId in input.delegation.subject.mayAct

may_act if input.principal.agentId in input.delegation.previous.mayAct

default decision := {"allow": false, "reason": "unknown_action", "scope": null}

decision := {"allow": true} if {
	delegation_rule
	may_act
} else := {"allow": false, "reason": "delegation_refused", "scope": null} if {
	delegation_rule
} else := {"allow": false, "reason": "not_visible", "scope": rule.scope} if {
	rule
	input.target != null
	not visible
} else := {"allow": false, "reason": "insufficient_scope", "scope": rule.scope} if {
	rule
	not permitted
} else := {"allow": false, "reason": "privilege_escalation", "scope": concat(" ", missing)} if {
	rule
	count(missing) > 0
} else := {"allow": true} if {
	rule
}

default allow := false

allow := decision.allow
