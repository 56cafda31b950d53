-- Dataset imports (issue 26): one archive (zip, tar or tar.gz) of thousands of images,
-- uploaded in one request and stored under DATA_DIR/imports, then read entry by entry in
-- the background by a leased job (src/jobs/dataset-import-worker.ts).
CREATE TABLE dataset_imports (
  id                  text PRIMARY KEY,
  tenant_id           text NOT NULL,
  dataset_id          text NOT NULL,
  status              text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
  -- The archive as it arrived: its name (multipart or ?filename=), its format (sniffed from
  -- the bytes), size and sha256 (hashed while it arrived).
  filename            text,
  format              text NOT NULL CHECK (format IN ('zip', 'tar', 'tar.gz')),
  bytes               bigint NOT NULL CHECK (bytes > 0),
  sha256              text NOT NULL,
  -- Progress as of the last checkpoint. A checkpoint commits in the same transaction as the
  -- images it counts, so a resumed import skips exactly the first entries_read entries and
  -- its counts stay right whatever moment the previous worker died at.
  bytes_read          bigint NOT NULL DEFAULT 0,
  entries_read        integer NOT NULL DEFAULT 0,
  images_stored       integer NOT NULL DEFAULT 0,
  duplicates          integer NOT NULL DEFAULT 0,
  captions_attached   integer NOT NULL DEFAULT 0,
  refused             integer NOT NULL DEFAULT 0,
  caption_conflicts   integer NOT NULL DEFAULT 0,
  -- The first refusals, [{entry, code, detail}]; `refused` counts them all.
  refusals            jsonb NOT NULL DEFAULT '[]',
  -- Why the import as a whole failed (an unreadable archive, ...).
  error_code          text,
  error_message       text,
  cancel_requested_at timestamptz,
  -- Crash recovery: the worker holding the import, until when, its last heartbeat, and how
  -- many times a worker has claimed it.
  lease_owner         text,
  lease_expires_at    timestamptz,
  heartbeat_at        timestamptz,
  claims              integer NOT NULL DEFAULT 0,
  -- The lifecycle trigger of migration 008 reads these; imports are subscribed to through
  -- webhook endpoints only, so they stay null.
  webhook_url         text,
  webhook_events      text[],
  created_at          timestamptz NOT NULL DEFAULT now(),
  started_at          timestamptz,
  completed_at        timestamptz,
  FOREIGN KEY (tenant_id, dataset_id) REFERENCES datasets (tenant_id, id) ON DELETE CASCADE,
  UNIQUE (tenant_id, id),
  CHECK ((status IN ('succeeded', 'failed', 'canceled')) = (completed_at IS NOT NULL))
);

-- Workers look for queued imports and for running ones whose lease expired.
CREATE INDEX dataset_imports_claim_idx ON dataset_imports (status, lease_expires_at) WHERE status IN ('queued', 'running');
CREATE INDEX dataset_imports_dataset_idx ON dataset_imports (tenant_id, dataset_id, id);

CREATE TRIGGER dataset_import_webhooks AFTER UPDATE ON dataset_imports
  FOR EACH ROW EXECUTE FUNCTION webhook_resource_events('dataset_import');
