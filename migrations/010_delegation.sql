-- Up Migration
-- Delegation (RFC 8693 token exchange). may_act: the agents allowed to act for this one (API.md:
-- a hop's actor must be in the may_act of the chain's subject or of the previous actor).
ALTER TABLE agents ADD COLUMN IF NOT EXISTS may_act UUID[] NOT NULL DEFAULT '{}';

-- One row per token issued by an exchange: the whole chain it depends on, so that validating it is
-- one primary-key read (plus the chain's agents, credentials and revocations by their keys) and it
-- dies with any link. Position 0 is the subject (the agent and credential of the original token),
-- position i ≥ 1 the actor of hop i (the agent that authenticated for that exchange and its
-- credential); chain_iats[i] is when token i was issued, compared with that agent's
-- tokens_valid_after. ancestor_jtis: the tokens this one was derived from, the original first.
CREATE TABLE IF NOT EXISTS delegated_tokens (
  jti               VARCHAR(64)   PRIMARY KEY,
  chain_agents      UUID[]        NOT NULL,
  chain_credentials UUID[]        NOT NULL,
  chain_iats        BIGINT[]      NOT NULL,
  ancestor_jtis     VARCHAR(64)[] NOT NULL,
  expires_at        TIMESTAMPTZ   NOT NULL,
  CHECK (cardinality(chain_agents) >= 2
     AND cardinality(chain_credentials) = cardinality(chain_agents)
     AND cardinality(chain_iats) = cardinality(chain_agents)
     AND cardinality(ancestor_jtis) = cardinality(chain_agents) - 1)
);

CREATE INDEX IF NOT EXISTS delegated_tokens_expires_at_idx ON delegated_tokens (expires_at);

-- Down Migration
DROP TABLE IF EXISTS delegated_tokens;
ALTER TABLE agents DROP COLUMN IF EXISTS may_act;
