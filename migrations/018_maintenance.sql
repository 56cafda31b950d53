-- The maintenance sweep (src/jobs/maintenance-worker.ts) purges what the tables and the data
-- volume would otherwise keep forever. Its one row is claimed under a lease by one replica
-- when it is due, so each sweep runs once however many replicas there are; the next is due
-- MAINTENANCE_INTERVAL_MS after it ends.
CREATE TABLE maintenance_sweeps (
  id               text PRIMARY KEY,
  next_run_at      timestamptz NOT NULL DEFAULT now(),
  lease_owner      text,
  lease_expires_at timestamptz,
  heartbeat_at     timestamptz,
  started_at       timestamptz,
  finished_at      timestamptz,
  -- What the last finished sweep removed, by kind ({"webhook_messages": 12, ...}).
  last_removed     jsonb
);

INSERT INTO maintenance_sweeps (id) VALUES ('retention');

-- What the sweep looks for, oldest first, without reading the live rows.
CREATE INDEX webhook_messages_completed_idx ON webhook_messages (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX generations_completed_idx ON generations (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
