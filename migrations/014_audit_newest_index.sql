-- Up Migration
-- The newest-first index over the whole trail serves only listings and exports that filter on no
-- agent, action or outcome: those name `created_at > '-infinity'` (true of every event), which
-- this partial index requires. A listing with an equality filter can't use it, so it always takes
-- 007's index for exactly its filters. With the plain index, PostgreSQL chose it for a filter
-- that matches a large share of the trail (a busy agent, a common action), expecting matches
-- spread evenly in time, and read every newer event until it found a page: 0.5 s a page when the
-- newest hundred thousand events were someone else's (bench/README.md, issue 18).
-- On a table that is already large, create the new index CONCURRENTLY by hand first: IF NOT EXISTS
-- then turns this migration into a drop of the old index, a brief lock, not a build.
CREATE INDEX IF NOT EXISTS audit_events_newest_idx ON audit_events (created_at DESC, event_id DESC) WHERE created_at > '-infinity';
DROP INDEX IF EXISTS audit_events_created_at_idx;

-- Down Migration
CREATE INDEX IF NOT EXISTS audit_events_created_at_idx ON audit_events (created_at DESC, event_id DESC);
DROP INDEX IF EXISTS audit_events_newest_idx;
