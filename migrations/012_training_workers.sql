-- 012: one run on several devices (params.devices). Each process that trains runs writes
-- here, on every poll, how many devices it trains on and how many of them are free, so a
-- replica creating a run can refuse one that asks more devices than any live worker has
-- (422 devices-unavailable), and a queued run can say what it waits for. A row whose
-- last_seen_at is old belongs to a process that died; a worker stopping deletes its own.
CREATE TABLE training_workers (
  -- The worker's lease owner id (host:pid:suffix), as in training_runs.lease_owner.
  owner         text PRIMARY KEY,
  devices       integer NOT NULL CHECK (devices >= 1),
  -- Devices with room for one more run now (a shared TRAIN_DEVICE has room for TRAINING_SLOTS runs).
  free_devices  integer NOT NULL CHECK (free_devices >= 0 AND free_devices <= devices),
  last_seen_at  timestamptz NOT NULL DEFAULT now()
);
