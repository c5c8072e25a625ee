-- Up Migration
-- Client secrets. Only an argon2id hash is stored (or, with Vault, a vault_path: see 005).
-- 'expired' is derived from expires_at when read; the stored status is active or revoked.
CREATE TABLE IF NOT EXISTS credentials (
  credential_id UUID PRIMARY KEY,
  client_id     UUID        NOT NULL REFERENCES agents (agent_id),
  status        VARCHAR(16) NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked', 'expired')),
  secret_hash   TEXT,
  expires_at    TIMESTAMPTZ,
  revoked_at    TIMESTAMPTZ,
  rotated_at    TIMESTAMPTZ,
  created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS credentials_client_id_idx ON credentials (client_id, created_at DESC);

-- Down Migration
DROP TABLE IF EXISTS credentials;
