-- Up Migration
-- Access tokens revoked one by one (RFC 7009), until they would have expired anyway. Suspension,
-- decommissioning and credential revocation need no row per token: they are read from agents and
-- credentials (a token's jti names the credential that obtained it).
CREATE TABLE IF NOT EXISTS revoked_tokens (
  jti        VARCHAR(64) PRIMARY KEY,
  agent_id   UUID        NOT NULL,
  revoked_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  expires_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX IF NOT EXISTS revoked_tokens_expires_at_idx ON revoked_tokens (expires_at);

-- Down Migration
DROP TABLE IF EXISTS revoked_tokens;
