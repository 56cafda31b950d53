-- 004: training runs, queued in Postgres and claimed by workers under a lease (the same
-- mechanism as captioning jobs: src/jobs/job-runner.ts), with the images they train on
-- as they were when the run was created.

CREATE TABLE training_runs (
  id                  text PRIMARY KEY,
  tenant_id           text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  -- No foreign key: a finished run outlives its dataset. A queued or running one keeps it
  -- (the service refuses to delete such a dataset).
  dataset_id          text NOT NULL,
  model_id            text NOT NULL,
  name                text,
  -- As Replicate's trainings: starting = claimed (loading the model, decoding, caching).
  status              text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'starting', 'running', 'succeeded', 'failed', 'canceled')),
  -- Every param resolved (src/schemas/training-params.ts), and the caller's own metadata.
  params              jsonb NOT NULL,
  metadata            jsonb NOT NULL DEFAULT '{}',
  -- The dataset's tokens when the run was created.
  trigger_token       text NOT NULL,
  class_word          text NOT NULL,
  progress            jsonb,
  metrics             jsonb,
  error_code          text,
  error_message       text,
  cancel_requested_at timestamptz,
  -- Crash recovery: the worker holding the run, until when, its last heartbeat, and how
  -- many times a worker has claimed it (a resumed run continues from its checkpoint).
  lease_owner         text,
  lease_expires_at    timestamptz,
  heartbeat_at        timestamptz,
  -- When a worker last claimed it: the queue serves the tenant served longest ago first.
  claimed_at          timestamptz,
  attempt             integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
  created_at          timestamptz NOT NULL DEFAULT now(),
  started_at          timestamptz,
  completed_at        timestamptz,
  CHECK ((status IN ('starting', 'running')) = (lease_owner IS NOT NULL))
);

-- The queue: what may be claimed, oldest first.
CREATE INDEX training_runs_open_idx ON training_runs (created_at, id) WHERE status IN ('queued', 'starting', 'running');
-- Tenant-scoped listing, newest first, and the per-tenant queue limit.
CREATE INDEX training_runs_tenant_idx ON training_runs (tenant_id, id);

-- The images a run trains on, snapshotted at creation: later caption edits do not change
-- a run, and a blob a run still needs is not released while it is listed here.
CREATE TABLE training_run_images (
  run_id            text NOT NULL REFERENCES training_runs (id) ON DELETE CASCADE,
  position          integer NOT NULL CHECK (position >= 0),
  image_id          text NOT NULL,
  sha256            text NOT NULL,
  caption           text NOT NULL,
  original_filename text,
  PRIMARY KEY (run_id, position)
);

CREATE INDEX training_run_images_sha256_idx ON training_run_images (sha256);
