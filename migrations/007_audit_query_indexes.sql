-- Up Migration
-- GET /api/v1/audit filters on any combination of agent_id, action and outcome, newest first, with
-- keyset pagination on (created_at, event_id) and an optional created_at range. Each combination
-- gets the index whose equality columns it names, followed by the sort key: PostgreSQL then walks
-- exactly the matching rows, already in order, from the cursor on (no sort, no rows filtered out),
-- however many millions of events the table holds. No filter and agent_id alone use 003's indexes.
-- On a table that is already large, create these CONCURRENTLY by hand first: IF NOT EXISTS then
-- turns this migration into a no-op instead of a write lock for the length of the build.
CREATE INDEX IF NOT EXISTS audit_events_action_idx ON audit_events (action, created_at DESC, event_id DESC);
CREATE INDEX IF NOT EXISTS audit_events_outcome_idx ON audit_events (outcome, created_at DESC, event_id DESC);
CREATE INDEX IF NOT EXISTS audit_events_agent_action_idx ON audit_events (agent_id, action, created_at DESC, event_id DESC);
CREATE INDEX IF NOT EXISTS audit_events_agent_outcome_idx ON audit_events (agent_id, outcome, created_at DESC, event_id DESC);
CREATE INDEX IF NOT EXISTS audit_events_action_outcome_idx ON audit_events (action, outcome, created_at DESC, event_id DESC);
CREATE INDEX IF NOT EXISTS audit_events_agent_action_outcome_idx ON audit_events (agent_id, action, outcome, created_at DESC, event_id DESC);

-- Down Migration
DROP INDEX IF EXISTS audit_events_agent_action_outcome_idx;
DROP INDEX IF EXISTS audit_events_action_outcome_idx;
DROP INDEX IF EXISTS audit_events_agent_outcome_idx;
DROP INDEX IF EXISTS audit_events_agent_action_idx;
DROP INDEX IF EXISTS audit_events_outcome_idx;
DROP INDEX IF EXISTS audit_events_action_idx;
