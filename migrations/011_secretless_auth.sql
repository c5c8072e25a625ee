-- Up Migration
-- Agents without secrets (API.md "Agents without secrets"): registered public keys, federated
-- external identities, and the authentication methods an agent accepts.
--
-- An agent's registered keys (jwks inline, or a jwks_uri) and its federated subjects are, like a
-- secret, rows of `credentials`: one per key (by its RFC 7638 thumbprint), one per jwks_uri, one per
-- federated subject. A token's jti names the row that authenticated it, so removing a key, a
-- jwks_uri or a federated subject revokes its row and every token it obtained at once, through the
-- same checks as a revoked secret (token validation, the issuance write).
ALTER TABLE agents ADD COLUMN IF NOT EXISTS jwks JSONB;
ALTER TABLE agents ADD COLUMN IF NOT EXISTS jwks_uri TEXT;
ALTER TABLE agents ADD COLUMN IF NOT EXISTS auth_methods TEXT[] NOT NULL
  DEFAULT '{client_secret_basic,client_secret_post,private_key_jwt}';
ALTER TABLE agents DROP CONSTRAINT IF EXISTS agents_jwks_one_source;
ALTER TABLE agents ADD CONSTRAINT agents_jwks_one_source CHECK (jwks IS NULL OR jwks_uri IS NULL);

ALTER TABLE credentials ADD COLUMN IF NOT EXISTS kind VARCHAR(16) NOT NULL DEFAULT 'secret';
ALTER TABLE credentials DROP CONSTRAINT IF EXISTS credentials_kind_check;
ALTER TABLE credentials ADD CONSTRAINT credentials_kind_check CHECK (kind IN ('secret', 'key', 'jwks_uri', 'federated'));
ALTER TABLE credentials ADD COLUMN IF NOT EXISTS key_thumbprint TEXT;
ALTER TABLE credentials ADD COLUMN IF NOT EXISTS jwks_uri TEXT;
ALTER TABLE credentials ADD COLUMN IF NOT EXISTS federated_issuer TEXT;
ALTER TABLE credentials ADD COLUMN IF NOT EXISTS federated_subject TEXT;
ALTER TABLE credentials ADD COLUMN IF NOT EXISTS federated_conditions JSONB;
ALTER TABLE credentials DROP CONSTRAINT IF EXISTS credentials_kind_fields;
ALTER TABLE credentials ADD CONSTRAINT credentials_kind_fields CHECK (
  (kind = 'secret') OR
  (kind = 'key' AND key_thumbprint IS NOT NULL) OR
  (kind = 'jwks_uri' AND jwks_uri IS NOT NULL) OR
  (kind = 'federated' AND federated_issuer IS NOT NULL AND federated_subject IS NOT NULL));
-- only a secret has a secret to store (009's rule, narrowed to kind = 'secret'): a key, a jwks_uri or
-- a federated subject has neither a hash nor a Vault location
ALTER TABLE credentials DROP CONSTRAINT IF EXISTS credentials_secret_stored;
ALTER TABLE credentials ADD CONSTRAINT credentials_secret_stored
  CHECK (kind <> 'secret' OR secret_hash IS NOT NULL OR (vault_path IS NOT NULL AND vault_version IS NOT NULL)) NOT VALID;

-- the federated subjects an assertion's (iss, sub) may map to
CREATE INDEX IF NOT EXISTS credentials_federated_idx ON credentials (federated_issuer, federated_subject)
  WHERE kind = 'federated' AND status = 'active';

-- Trusted external issuers (workload identity federation): Kubernetes clusters, SPIFFE trust
-- domains, GitHub Actions, … Their keys are inline (jwks) or fetched (jwks_uri, or found by OIDC
-- discovery of the issuer when both are null and discovery is true).
CREATE TABLE IF NOT EXISTS federation_issuers (
  issuer_id            UUID PRIMARY KEY,
  issuer               TEXT        NOT NULL UNIQUE,
  jwks                 JSONB,
  jwks_uri             TEXT,
  discovery            BOOLEAN     NOT NULL DEFAULT false,
  audiences            TEXT[]      NOT NULL CHECK (cardinality(audiences) > 0),
  algorithms           TEXT[]      NOT NULL CHECK (cardinality(algorithms) > 0),
  max_lifetime_seconds INTEGER     NOT NULL CHECK (max_lifetime_seconds > 0),
  created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
  CHECK (num_nonnulls(jwks, jwks_uri) + (CASE WHEN discovery THEN 1 ELSE 0 END) = 1)
);

-- JWT assertions already used (RFC 7523 §3 "jti"): the durable record behind Redis's single-use
-- check, so a replay is refused even after Redis lost its copy. Kept until the assertion expires.
CREATE TABLE IF NOT EXISTS used_assertions (
  assertion_key VARCHAR(128) PRIMARY KEY,
  expires_at    TIMESTAMPTZ  NOT NULL
);
CREATE INDEX IF NOT EXISTS used_assertions_expires_at_idx ON used_assertions (expires_at);

-- Down Migration
DROP TABLE IF EXISTS used_assertions;
DROP TABLE IF EXISTS federation_issuers;
DROP INDEX IF EXISTS credentials_federated_idx;
ALTER TABLE credentials DROP CONSTRAINT IF EXISTS credentials_kind_fields;
ALTER TABLE credentials DROP COLUMN IF EXISTS federated_conditions;
ALTER TABLE credentials DROP COLUMN IF EXISTS federated_subject;
ALTER TABLE credentials DROP COLUMN IF EXISTS federated_issuer;
ALTER TABLE credentials DROP COLUMN IF EXISTS jwks_uri;
ALTER TABLE credentials DROP COLUMN IF EXISTS key_thumbprint;
ALTER TABLE credentials DROP CONSTRAINT IF EXISTS credentials_kind_check;
ALTER TABLE credentials DROP CONSTRAINT IF EXISTS credentials_secret_stored;
ALTER TABLE credentials DROP COLUMN IF EXISTS kind;
ALTER TABLE credentials ADD CONSTRAINT credentials_secret_stored
  CHECK (secret_hash IS NOT NULL OR (vault_path IS NOT NULL AND vault_version IS NOT NULL)) NOT VALID;
ALTER TABLE agents DROP CONSTRAINT IF EXISTS agents_jwks_one_source;
ALTER TABLE agents DROP COLUMN IF EXISTS auth_methods;
ALTER TABLE agents DROP COLUMN IF EXISTS jwks_uri;
ALTER TABLE agents DROP COLUMN IF EXISTS jwks;
