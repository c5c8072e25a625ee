-- Up Migration
-- Append-only audit trail. agent_id is the agent the event is about; it has no foreign key so an
-- event about an unknown or purged agent can still be recorded. The caller is metadata.actorId.
CREATE TABLE IF NOT EXISTS audit_events (
  event_id   UUID PRIMARY KEY,
  agent_id   UUID,
  action     VARCHAR(64) NOT NULL,
  outcome    VARCHAR(16) NOT NULL CHECK (outcome IN ('success', 'failure')),
  ip_address INET,
  user_agent VARCHAR(512),
  metadata   JSONB       NOT NULL DEFAULT '{}'::jsonb,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS audit_events_created_at_idx ON audit_events (created_at DESC, event_id DESC);
CREATE INDEX IF NOT EXISTS audit_events_agent_id_idx ON audit_events (agent_id, created_at DESC, event_id DESC);

-- Down Migration
DROP TABLE IF EXISTS audit_events;
