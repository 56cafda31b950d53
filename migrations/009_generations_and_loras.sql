-- 009: LoRAs as resources (registered by succeeded training runs, or uploaded),
-- generations: text-to-image jobs on the shared job queue (src/jobs/job-runner.ts), with
-- their images, and prior preservation's cached class images. LoRA files and generated
-- images are blobs (content-addressed, released through blob_releases like dataset images).

CREATE TABLE loras (
  id              text PRIMARY KEY,
  tenant_id       text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  name            text NOT NULL,
  source          text NOT NULL CHECK (source IN ('training_run', 'upload')),
  -- The run that trained it; no foreign key: the LoRA outlives a deleted run.
  training_run_id text UNIQUE,
  -- The base model it was trained on or checked against.
  model_id        text NOT NULL,
  trigger_phrase  text,
  sha256          text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  -- AUTOMATIC1111's "AutoV3" hash: sha256 of the tensor data after the header (its "Lora hashes").
  autov3          text NOT NULL,
  byte_size       bigint NOT NULL CHECK (byte_size >= 0),
  layout          text NOT NULL CHECK (layout IN ('kohya-sgm', 'kohya-diffusers', 'peft')),
  rank            integer NOT NULL CHECK (rank > 0),
  alpha           double precision NOT NULL,
  modules         integer NOT NULL CHECK (modules > 0),
  components      text[] NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX loras_tenant_idx ON loras (tenant_id, id);
CREATE INDEX loras_sha256_idx ON loras (sha256);

CREATE TRIGGER loras_release_blob AFTER DELETE ON loras
  FOR EACH ROW EXECUTE FUNCTION images_release_blob();

CREATE TABLE generations (
  id                  text PRIMARY KEY,
  tenant_id           text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  model_id            text NOT NULL,
  status              text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'starting', 'running', 'succeeded', 'failed', 'canceled')),
  -- Every input resolved (prompt, sizes, steps, sampler, seed, ...): src/schemas/generations.ts.
  params              jsonb NOT NULL,
  -- [{lora_id, name, scale, sha256, autov3}]: the LoRAs as they were when it was queued.
  loras               jsonb NOT NULL DEFAULT '[]',
  progress            jsonb,
  -- Seconds per phase when it ended (queued, load, denoise, encode).
  metrics             jsonb,
  error_code          text,
  error_message       text,
  cancel_requested_at timestamptz,
  lease_owner         text,
  lease_expires_at    timestamptz,
  heartbeat_at        timestamptz,
  claimed_at          timestamptz,
  attempt             integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
  -- Claims after a lease ran out (the process running it died), as training runs count them.
  interruptions       integer NOT NULL DEFAULT 0 CHECK (interruptions >= 0),
  webhook_url         text,
  webhook_events      text[],
  created_at          timestamptz NOT NULL DEFAULT now(),
  started_at          timestamptz,
  completed_at        timestamptz,
  CHECK ((status IN ('starting', 'running')) = (lease_owner IS NOT NULL))
);

CREATE INDEX generations_open_idx ON generations (created_at, id) WHERE status IN ('queued', 'starting', 'running');
CREATE INDEX generations_tenant_idx ON generations (tenant_id, id);
-- "Is this LoRA wanted by a generation that has not run yet?" (deleting a LoRA).
CREATE INDEX generations_open_loras_idx ON generations USING gin (loras) WHERE status IN ('queued', 'starting', 'running');

CREATE TABLE generation_images (
  generation_id text NOT NULL REFERENCES generations (id) ON DELETE CASCADE,
  index         integer NOT NULL CHECK (index >= 0),
  seed          bigint NOT NULL,
  width         integer NOT NULL,
  height        integer NOT NULL,
  sha256        text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  byte_size     bigint NOT NULL,
  PRIMARY KEY (generation_id, index)
);

CREATE INDEX generation_images_sha256_idx ON generation_images (sha256);

CREATE TRIGGER generation_images_release_blob AFTER DELETE ON generation_images
  FOR EACH ROW EXECUTE FUNCTION images_release_blob();

-- generation.started / succeeded / failed / canceled (migration 008's outbox).
CREATE TRIGGER generation_webhooks AFTER UPDATE ON generations
  FOR EACH ROW EXECUTE FUNCTION webhook_resource_events('generation');

-- Prior preservation's class images: made once by a base model per (prompt, resolution,
-- seed), reused by every later run that asks for them (src/services/class-images.ts).
CREATE TABLE class_images (
  model_id   text NOT NULL,
  prompt     text NOT NULL,
  resolution integer NOT NULL,
  seed       integer NOT NULL CHECK (seed >= 0),
  sha256     text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (model_id, prompt, resolution, seed)
);

CREATE INDEX class_images_sha256_idx ON class_images (sha256);
