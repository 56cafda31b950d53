-- 011: full fine-tuning (training param method "full", DreamBooth). A succeeded full run
-- registers what it trained as a model of its tenant, listed by GET /v1/models beside the
-- server's and usable as the base of generations and later runs. Its files stay where the
-- run wrote them (DATA_DIR/runs/<run>/model.safetensors and the diffusers folder model/),
-- published as the run's artifacts; this row says what to load and how many bytes the
-- tenant keeps for it (TENANT_MAX_MODEL_BYTES).

CREATE TABLE tenant_models (
  id              text PRIMARY KEY,
  tenant_id       text NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
  -- The run holds the model's files: it cannot be deleted while the model exists.
  training_run_id text NOT NULL UNIQUE REFERENCES training_runs (id),
  -- The model it was fine-tuned from (a server model, or another tenant model of the tenant).
  base_model_id   text NOT NULL,
  name            text,
  family          text NOT NULL CHECK (family IN ('sd1', 'sd2', 'sdxl')),
  -- What the engine loads, in the run's folder: the diffusers folder, else the single file.
  load_name       text NOT NULL,
  -- A single file's configs and tokenizers: its base's diffusers folder (absolute), or null.
  config_dir      text,
  -- The engine's inspectModel of it when it was registered (family, prediction type, parameters).
  summary         jsonb NOT NULL,
  -- Bytes of the files kept for it (the single file, its EMA, the folder's own files; not
  -- the base model's components the folder links to).
  stored_bytes    bigint NOT NULL CHECK (stored_bytes >= 0),
  created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX tenant_models_tenant_idx ON tenant_models (tenant_id, id);

-- The files of full runs among a run's artifacts: the single file, its EMA twin, and the
-- diffusers folder (downloaded as a tar).
ALTER TABLE training_run_artifacts DROP CONSTRAINT training_run_artifacts_kind_check;
ALTER TABLE training_run_artifacts ADD CONSTRAINT training_run_artifacts_kind_check
  CHECK (kind IN ('lora', 'lora_peft', 'model', 'model_ema', 'model_diffusers', 'checkpoint', 'validation_image'));

-- What a queued or running full run's model files are expected to take (from the base
-- model's parameter counts), counted against TENANT_MAX_MODEL_BYTES until the run ends.
ALTER TABLE training_runs ADD COLUMN expected_model_bytes bigint CHECK (expected_model_bytes >= 0);

-- "Does a job that has not ended use this model?" (deleting a tenant model).
CREATE INDEX training_runs_open_model_idx ON training_runs (model_id) WHERE status IN ('queued', 'starting', 'running');
CREATE INDEX generations_open_model_idx ON generations (model_id) WHERE status IN ('queued', 'starting', 'running');
