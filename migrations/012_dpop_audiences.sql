-- Up Migration
-- Sender-constrained tokens and resource indicators (API.md "DPoP and discovery for MCP"):
-- audiences: the absolute URIs an agent's tokens may be issued for (RFC 8707 `resource`); empty =
-- only ISSUER_URL. dpop_bound: the agent must present a DPoP proof (RFC 9449) for every token.
ALTER TABLE agents ADD COLUMN IF NOT EXISTS audiences TEXT[] NOT NULL DEFAULT '{}';
ALTER TABLE agents ADD COLUMN IF NOT EXISTS dpop_bound BOOLEAN NOT NULL DEFAULT false;

-- Down Migration
ALTER TABLE agents DROP COLUMN IF EXISTS dpop_bound;
ALTER TABLE agents DROP COLUMN IF EXISTS audiences;
