-- 015: captioning jobs in batch mode (the provider's batch API, half the price): the mode a
-- job runs in, and every batch it submitted, so that a worker that takes over a job (after a
-- restart or a lost lease) polls the batches already in flight instead of sending them again.

-- interactive: one request per image; batch: the provider's batch API.
ALTER TABLE captioning_jobs
  ADD COLUMN mode text NOT NULL DEFAULT 'interactive' CHECK (mode IN ('interactive', 'batch'));

CREATE TABLE caption_batches (
  id                text PRIMARY KEY,
  job_id            text NOT NULL REFERENCES captioning_jobs (id) ON DELETE CASCADE,
  -- The provider's id (msgbatch_...), what a worker polls.
  provider_batch_id text NOT NULL UNIQUE,
  -- in_progress, canceling, ended: as the provider last said; collected: ended and every
  -- result written; abandoned: canceled with its job, its results not collected.
  status            text NOT NULL DEFAULT 'in_progress'
                      CHECK (status IN ('in_progress', 'canceling', 'ended', 'collected', 'abandoned')),
  -- The job items (image ids, also the requests' custom_id) the batch carries.
  image_ids         text[] NOT NULL,
  -- The provider's request_counts at the last look.
  processing        integer NOT NULL DEFAULT 0,
  succeeded         integer NOT NULL DEFAULT 0,
  errored           integer NOT NULL DEFAULT 0,
  canceled          integer NOT NULL DEFAULT 0,
  expired           integer NOT NULL DEFAULT 0,
  submitted_at      timestamptz NOT NULL DEFAULT now(),
  ended_at          timestamptz
);

CREATE INDEX caption_batches_job_idx ON caption_batches (job_id, id);
