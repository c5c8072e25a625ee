-- Up Migration
-- Client ID metadata documents (API.md "DPoP and discovery for MCP"; draft-ietf-oauth-client-id-metadata-document):
-- a client whose client_id is an https URL is represented by a "shadow" agent, created on its first
-- successful authentication, whose agent_id is a UUID v5 of that URL. client_id_url is the URL: null
-- for every agent registered through the API, unique otherwise.
ALTER TABLE agents ADD COLUMN IF NOT EXISTS client_id_url TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS agents_client_id_url_key ON agents (client_id_url) WHERE client_id_url IS NOT NULL;

-- Down Migration
DROP INDEX IF EXISTS agents_client_id_url_key;
ALTER TABLE agents DROP COLUMN IF EXISTS client_id_url;
