-- 007: a run's interruptions, counted apart from its attempts. `attempt` grows with every
-- claim, including the claim after a graceful hand-back (SIGTERM in a rolling deploy); only
-- a claim of a run whose lease ran out (its process died) counts as an interruption, and
-- TRAINING_MAX_ATTEMPTS bounds those, so deploys never use up a run's tries.
ALTER TABLE training_runs
  ADD COLUMN interruptions integer NOT NULL DEFAULT 0 CHECK (interruptions >= 0);
