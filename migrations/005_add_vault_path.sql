-- Up Migration
-- With Vault enabled the secret lives in Vault KV v2 and the row records where.
ALTER TABLE credentials ADD COLUMN IF NOT EXISTS vault_path VARCHAR(512);

-- Down Migration
ALTER TABLE credentials DROP COLUMN IF EXISTS vault_path;
