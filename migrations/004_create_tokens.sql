-- Up Migration
-- Tokens issued per agent per UTC month (month = its first day), for TOKEN_MONTHLY_QUOTA.
-- The durable count: Redis may lose its copy, this table does not.
CREATE TABLE IF NOT EXISTS token_monthly_counts (
  agent_id UUID    NOT NULL REFERENCES agents (agent_id),
  month    DATE    NOT NULL CHECK (extract(day FROM month) = 1),
  count    INTEGER NOT NULL DEFAULT 0 CHECK (count >= 0),
  PRIMARY KEY (agent_id, month)
);

-- Down Migration
DROP TABLE IF EXISTS token_monthly_counts;
