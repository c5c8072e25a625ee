-- Up Migration
-- One row per access token issued: the server-side record of which credential obtained it, and the
-- durable revocation state (RFC 7009). A token without a row here is not one of ours. Rows are
-- pruned some time after the token expires.
CREATE TABLE IF NOT EXISTS issued_tokens (
  jti           UUID PRIMARY KEY,
  agent_id      UUID          NOT NULL REFERENCES agents (agent_id),
  credential_id UUID          NOT NULL REFERENCES credentials (credential_id),
  scope         TEXT          NOT NULL,
  audience      VARCHAR(2048) NOT NULL,
  issued_at     TIMESTAMPTZ   NOT NULL,
  expires_at    TIMESTAMPTZ   NOT NULL,
  revoked_at    TIMESTAMPTZ
);

CREATE INDEX IF NOT EXISTS issued_tokens_expires_at_idx ON issued_tokens (expires_at);

-- Down Migration
DROP TABLE IF EXISTS issued_tokens;
