-- Up Migration
-- With Vault enabled a credential's secret (its argon2id hash) is one KV v2 secret at vault_path
-- (005); vault_version is the KV version the row stands for. A rotation writes a new version and
-- commits the row naming it, so a version the row does not name (left by a rotation that failed
-- before its commit) never verifies, and a verified secret stays bound to (path, version).
ALTER TABLE credentials ADD COLUMN IF NOT EXISTS vault_version INTEGER;
-- Every credential written from now on says where its secret is: a hash here, or a Vault location.
-- NOT VALID: rows written before are not re-checked (the constraint applies to new writes).
ALTER TABLE credentials DROP CONSTRAINT IF EXISTS credentials_secret_stored;
ALTER TABLE credentials ADD CONSTRAINT credentials_secret_stored
  CHECK (secret_hash IS NOT NULL OR (vault_path IS NOT NULL AND vault_version IS NOT NULL)) NOT VALID;

-- Down Migration
ALTER TABLE credentials DROP CONSTRAINT IF EXISTS credentials_secret_stored;
ALTER TABLE credentials DROP COLUMN IF EXISTS vault_version;
