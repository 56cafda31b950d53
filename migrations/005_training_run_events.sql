-- 005: what a training run tells its watchers (events, followed as pages or Server-Sent
-- Events) and the files it leaves (artifacts, downloaded with ETag and Range).

-- Ids increase across all runs, so one id both orders a run's events and resumes a
-- stream after Last-Event-ID.
CREATE TABLE training_run_events (
  id         bigserial PRIMARY KEY,
  run_id     text NOT NULL REFERENCES training_runs (id) ON DELETE CASCADE,
  type       text NOT NULL CHECK (type IN ('status', 'progress', 'log', 'checkpoint', 'validation', 'artifact')),
  data       jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX training_run_events_run_idx ON training_run_events (run_id, id);

-- Every status change is an event, whichever statement made it (create, claim, progress,
-- hand-back, cancel, finish) and whichever process ran it: a trigger cannot forget one.
CREATE FUNCTION training_run_status_event() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status THEN
    INSERT INTO training_run_events (run_id, type, data)
    VALUES (NEW.id, 'status', jsonb_build_object(
      'status', NEW.status,
      'attempt', NEW.attempt,
      'error', CASE WHEN NEW.error_code IS NULL THEN NULL
                    ELSE jsonb_build_object('code', NEW.error_code, 'message', coalesce(NEW.error_message, '')) END));
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER training_run_status_event
  AFTER INSERT OR UPDATE OF status ON training_runs
  FOR EACH ROW EXECUTE FUNCTION training_run_status_event();

-- The files a run wrote under its folder (DATA_DIR/runs/<id>/ on local disk): the LoRA
-- in kohya's and in the peft layout, checkpoints, validation images.
CREATE TABLE training_run_artifacts (
  run_id     text NOT NULL REFERENCES training_runs (id) ON DELETE CASCADE,
  -- The path under the run's folder, e.g. lora.safetensors or samples/step-000100-00.png.
  name       text NOT NULL,
  kind       text NOT NULL CHECK (kind IN ('lora', 'lora_peft', 'checkpoint', 'validation_image')),
  byte_size  bigint NOT NULL CHECK (byte_size >= 0),
  sha256     text NOT NULL,
  step       integer NOT NULL CHECK (step >= 0),
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (run_id, name)
);

-- A run's image snapshot holds its blobs too (src/repositories/images.ts BLOB_REFERENCES):
-- deleting a finished run queues them for release, as deleting an image does.
CREATE TRIGGER training_run_images_release_blob AFTER DELETE ON training_run_images
  FOR EACH ROW EXECUTE FUNCTION images_release_blob();
