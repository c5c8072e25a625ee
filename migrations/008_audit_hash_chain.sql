-- Up Migration
-- Tamper evidence: one hash chain over every audit event (README, "Hash chain").
--
-- Writers never wait for the chain: they insert events as before. A sealer (one at a time, in any
-- instance) later gives each committed event its place in the chain and its hash, in the order of
-- the transactions that wrote them. tx_id is the writing transaction's id (pg_current_xact_id(),
-- 64-bit, never wraps): every transaction below pg_snapshot_xmin(pg_current_snapshot()) has ended,
-- so the events it wrote are all visible, and the sealer can take them in (tx_id, created_at,
-- event_id) order without ever skipping one that commits later.
ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS tx_id xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX IF NOT EXISTS audit_events_seal_order_idx ON audit_events (tx_id, created_at, event_id);

-- The seals live beside the events, so audit_events stays insert-only (an UPDATE would rewrite every
-- index entry of the row). chain_index is gapless from the anchor to the head. created_at repeats
-- the event's, so that verifying a time range finds its ends in one index (the hash covers the
-- event's own copy).
CREATE TABLE IF NOT EXISTS audit_seals (
  chain_index BIGINT      PRIMARY KEY CHECK (chain_index > 0),
  event_id    UUID        NOT NULL UNIQUE,
  hash        BYTEA       NOT NULL CHECK (octet_length(hash) = 32),
  created_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_seals_created_at_idx ON audit_seals (created_at, chain_index);

-- The head of the chain and how far the sealer has got (the last sealed event's order key).
-- Its row lock is the sealer's mutex.
CREATE TABLE IF NOT EXISTS audit_chain (
  singleton         BOOLEAN     PRIMARY KEY DEFAULT true CHECK (singleton),
  head_index        BIGINT      NOT NULL DEFAULT 0,
  head_hash         BYTEA       NOT NULL DEFAULT decode(repeat('00', 32), 'hex'),
  head_event_id     UUID,
  sealed_tx         xid8        NOT NULL DEFAULT '0',
  sealed_created_at TIMESTAMPTZ NOT NULL DEFAULT '1970-01-01T00:00:00Z',
  sealed_event_id   UUID        NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000'
);

-- Where the retained chain starts: retention deletes a prefix of the chain and records here the
-- first index kept and the hash that precedes it, so what is left still verifies. Its row lock is
-- the pruner's mutex.
CREATE TABLE IF NOT EXISTS audit_chain_anchor (
  singleton   BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
  first_index BIGINT  NOT NULL DEFAULT 1,
  prev_hash   BYTEA   NOT NULL DEFAULT decode(repeat('00', 32), 'hex')
);

INSERT INTO audit_chain DEFAULT VALUES ON CONFLICT DO NOTHING;
INSERT INTO audit_chain_anchor DEFAULT VALUES ON CONFLICT DO NOTHING;

-- Down Migration
DROP TABLE IF EXISTS audit_chain_anchor;
DROP TABLE IF EXISTS audit_chain;
DROP TABLE IF EXISTS audit_seals;
DROP INDEX IF EXISTS audit_events_seal_order_idx;
ALTER TABLE audit_events DROP COLUMN IF EXISTS tx_id;
