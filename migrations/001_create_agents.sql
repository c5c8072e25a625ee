-- Up Migration
-- Agents: the identities. agent_id is also the OAuth client_id. Emails are unique regardless of case
-- and stay reserved after decommissioning (rows are never deleted).
DO $$ BEGIN
  CREATE TYPE agent_status AS ENUM ('active', 'suspended', 'decommissioned');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE TABLE IF NOT EXISTS agents (
  agent_id           UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  email              VARCHAR(254) NOT NULL,
  agent_type         VARCHAR(32)  NOT NULL CHECK (agent_type IN ('screener', 'classifier', 'orchestrator', 'extractor', 'summarizer', 'router', 'monitor', 'custom')),
  version            VARCHAR(64)  NOT NULL,
  capabilities       TEXT[]       NOT NULL CHECK (cardinality(capabilities) > 0),
  owner              VARCHAR(128) NOT NULL,
  deployment_env     VARCHAR(16)  NOT NULL CHECK (deployment_env IN ('development', 'staging', 'production')),
  status             agent_status NOT NULL DEFAULT 'active',
  -- tokens issued before this instant are invalid (set on suspension and decommissioning)
  tokens_valid_after TIMESTAMPTZ  NOT NULL DEFAULT '1970-01-01T00:00:00Z',
  created_at         TIMESTAMPTZ  NOT NULL DEFAULT now(),
  updated_at         TIMESTAMPTZ  NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX IF NOT EXISTS agents_email_lower_key ON agents (lower(email));
-- keyset pagination, newest first
CREATE INDEX IF NOT EXISTS agents_created_at_idx ON agents (created_at DESC, agent_id DESC);
CREATE INDEX IF NOT EXISTS agents_owner_idx ON agents (owner);

-- Down Migration
DROP TABLE IF EXISTS agents;
DROP TYPE IF EXISTS agent_status;
