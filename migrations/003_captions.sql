-- 003: captions as data (every version of every image's caption, with where it came from
-- and what it cost), captioning jobs that survive a restart, their per-image items, and
-- a cache of provider answers so that re-running a job on unchanged images costs nothing.

-- Every caption an image has had, newest last. Exactly one row per captioned image is
-- current; the older ones are its history. images.caption / images.caption_source stay a
-- copy of the current row (written in the same transaction), so the images API and the
-- upload path keep working unchanged.
CREATE TABLE image_captions (
  id             text PRIMARY KEY,
  tenant_id      text NOT NULL,
  dataset_id     text NOT NULL,
  image_id       text NOT NULL,
  caption        text NOT NULL,
  -- upload: a name.txt sidecar sent with the image; manual: written through the API;
  -- otherwise the caption provider that wrote it.
  source         text NOT NULL CHECK (source IN ('upload', 'manual', 'anthropic', 'openai-compatible', 'template')),
  -- Provider answers only: which model and prompt wrote it, the tokens and estimated cost
  -- of the request that produced it (null cost: the model's price is unknown).
  model          text,
  prompt_version text,
  input_tokens   integer CHECK (input_tokens >= 0),
  output_tokens  integer CHECK (output_tokens >= 0),
  cost_usd       double precision CHECK (cost_usd >= 0),
  -- True when the answer came from caption_cache: no request was made for this row.
  cached         boolean NOT NULL DEFAULT false,
  -- True when the consistency pass of a job rewrote the caption.
  normalized     boolean NOT NULL DEFAULT false,
  -- The captioning job that wrote it; no foreign key, so history outlives deleted jobs.
  job_id         text,
  is_current     boolean NOT NULL DEFAULT true,
  created_at     timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (tenant_id, image_id) REFERENCES images (tenant_id, id) ON DELETE CASCADE,
  CHECK ((source IN ('upload', 'manual')) = (model IS NULL))
);

CREATE UNIQUE INDEX image_captions_current_idx ON image_captions (image_id) WHERE is_current;
CREATE INDEX image_captions_history_idx ON image_captions (tenant_id, image_id, id);

-- Sidecar captions arrive with the image row (INSERT INTO images ... caption, 'upload'):
-- each becomes that image's first history row.
CREATE FUNCTION images_first_caption() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.caption IS NOT NULL THEN
    INSERT INTO image_captions (id, tenant_id, dataset_id, image_id, caption, source, created_at)
    VALUES ('cap_' || substr(NEW.id, 5), NEW.tenant_id, NEW.dataset_id, NEW.id, NEW.caption,
            CASE WHEN NEW.caption_source = 'manual' THEN 'manual' ELSE 'upload' END, NEW.created_at);
  END IF;
  RETURN NEW;
END;
$$;

CREATE TRIGGER images_first_caption AFTER INSERT ON images
  FOR EACH ROW EXECUTE FUNCTION images_first_caption();

-- Captions stored before this migration (all from sidecars) become first history rows too.
-- The id reuses the image's ULID, which is unique and time-ordered like every other id.
INSERT INTO image_captions (id, tenant_id, dataset_id, image_id, caption, source, created_at)
SELECT 'cap_' || substr(id, 5), tenant_id, dataset_id, id, caption,
       CASE WHEN caption_source = 'manual' THEN 'manual' ELSE 'upload' END, created_at
  FROM images
 WHERE caption IS NOT NULL;

-- A request to caption some or all images of a dataset, run in the background by any
-- replica's worker. A worker owns a running job while its lease lasts and renews it by
-- heartbeat; a job whose lease expired (its process died) is claimed again and resumed.
CREATE TABLE captioning_jobs (
  id                  text PRIMARY KEY,
  tenant_id           text NOT NULL,
  dataset_id          text NOT NULL,
  status              text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
  provider            text NOT NULL CHECK (provider IN ('anthropic', 'openai-compatible', 'template')),
  model               text NOT NULL,
  prompt_version      text NOT NULL,
  -- The dataset's tokens when the job was created: every caption of the job uses the same.
  trigger_token       text NOT NULL,
  class_word          text NOT NULL,
  -- Options as requested: overwrite manual/upload captions, style hint, the images named
  -- (null = the whole dataset), and whether to run the consistency pass.
  overwrite           boolean NOT NULL DEFAULT false,
  style_hint          text,
  image_ids           text[],
  consistency_pass    boolean NOT NULL DEFAULT false,
  -- Tokens and estimated cost of the requests this job made (cache hits cost nothing).
  input_tokens        integer NOT NULL DEFAULT 0,
  output_tokens       integer NOT NULL DEFAULT 0,
  cost_usd            double precision NOT NULL DEFAULT 0,
  -- False once a request's cost was unknown: cost_usd is then a lower bound.
  cost_known          boolean NOT NULL DEFAULT true,
  -- Why the whole job failed (per-image errors live on the items).
  error_code          text,
  error_message       text,
  cancel_requested_at timestamptz,
  -- Crash recovery: the worker holding the job, until when, its last heartbeat, and how
  -- many times a worker has claimed it.
  lease_owner         text,
  lease_expires_at    timestamptz,
  heartbeat_at        timestamptz,
  claims              integer NOT NULL DEFAULT 0,
  created_at          timestamptz NOT NULL DEFAULT now(),
  started_at          timestamptz,
  finished_at         timestamptz,
  FOREIGN KEY (tenant_id, dataset_id) REFERENCES datasets (tenant_id, id) ON DELETE CASCADE,
  UNIQUE (tenant_id, id),
  CHECK ((status IN ('succeeded', 'failed', 'canceled')) = (finished_at IS NOT NULL))
);

-- One unfinished job per dataset: two jobs writing the same captions would race.
CREATE UNIQUE INDEX captioning_jobs_active_idx ON captioning_jobs (dataset_id) WHERE status IN ('queued', 'running');
-- Workers look for queued jobs and for running jobs whose lease expired.
CREATE INDEX captioning_jobs_claim_idx ON captioning_jobs (status, lease_expires_at) WHERE status IN ('queued', 'running');
CREATE INDEX captioning_jobs_dataset_idx ON captioning_jobs (tenant_id, dataset_id, id);

-- One image of a job. An image deleted while its job runs takes its item with it.
CREATE TABLE captioning_job_items (
  job_id        text NOT NULL REFERENCES captioning_jobs (id) ON DELETE CASCADE,
  tenant_id     text NOT NULL,
  image_id      text NOT NULL,
  -- queued -> running -> succeeded | failed | skipped (a manual caption kept) | canceled.
  -- A running item of a dead worker goes back to queued when its job is resumed.
  status        text NOT NULL DEFAULT 'queued'
                  CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'skipped', 'canceled')),
  -- Times a worker started this image (more than 1 after a resume or a shutdown).
  runs          integer NOT NULL DEFAULT 0,
  -- Requests made on the last failed try, retries included.
  attempts      integer NOT NULL DEFAULT 0,
  cached        boolean NOT NULL DEFAULT false,
  error_code    text,
  error_message text,
  http_status   integer,
  caption_id    text REFERENCES image_captions (id) ON DELETE SET NULL,
  updated_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job_id, image_id),
  FOREIGN KEY (tenant_id, image_id) REFERENCES images (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX captioning_job_items_status_idx ON captioning_job_items (job_id, status);

-- Provider answers by everything that determines them, so an unchanged image captioned
-- again with the same provider, model, prompt, tokens and style hint makes no request.
-- Scoped per tenant: one tenant's spend never answers another's request.
CREATE TABLE caption_cache (
  tenant_id      text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  sha256         text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  provider       text NOT NULL,
  model          text NOT NULL,
  prompt_version text NOT NULL,
  trigger_token  text NOT NULL,
  class_word     text NOT NULL,
  -- '' when the job gave no style hint.
  style_hint     text NOT NULL,
  caption        text NOT NULL,
  input_tokens   integer NOT NULL,
  output_tokens  integer NOT NULL,
  cost_usd       double precision,
  created_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, sha256, provider, model, prompt_version, trigger_token, class_word, style_hint)
);
