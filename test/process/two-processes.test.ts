// Two service processes (TRAINING_SLOTS=1 each) on one Postgres database and one shared
// DATA_DIR, as two replicas behind a load balancer: they start together (migrations run
// once, under the advisory lock), share the queue, and two runs train side by side, one
// in each process, each claimed exactly once. A run's files, written by one process, are
// served by the other.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import {
  createRun,
  datasetWithPhotos,
  getRun,
  issueKey,
  openDatabase,
  pollUntil,
  readSafetensors,
  startService,
  TERMINAL_STATUSES,
  useProcessTestBed,
  type ServiceProcess,
} from './service-process.js';

const MAX_STEPS = 40;
const PARAMS = { resolution: 128, max_steps: MAX_STEPS, checkpoint_every: 0, save_peft: false, rank: 4, alpha: 4 };

const bed = useProcessTestBed('sdxl-two-processes-');

interface Snapshot {
  id: string;
  status: string;
  attempt: number;
  lease_owner: string | null;
}

const HELD = ['starting', 'running'];
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

test('two processes on one database train two runs side by side, each exactly once, and serve each other\'s files', { timeout: 180_000 }, async (t) => {
  // Both start at once: each applies the migrations under the advisory lock, neither fails.
  const start = (name: string) => startService(t, { name, databaseUrl: bed.database.url, dataDir: bed.dataDir, env: { TRAINING_SLOTS: '1' } });
  const [a, b] = await Promise.all([start('A'), start('B')]);
  const context = () => `${a.tail(25)}\n${b.tail(25)}`;
  const auth = await issueKey(bed.db);
  const datasetId = await datasetWithPhotos(a, auth, 3);

  // One run through each process; different seeds, so their LoRAs differ.
  const runs = [
    await createRun(a, auth, datasetId, { ...PARAMS, seed: 1 }),
    await createRun(b, auth, datasetId, { ...PARAMS, seed: 2 }),
  ];
  const ids = runs.map((run) => run.id);

  // Watch the queue itself until both have finished: who holds which run, and when.
  const owners = new Map<string, Set<string>>(ids.map((id) => [id, new Set()]));
  let sideBySide: Snapshot[] | undefined;
  const finished = await pollUntil('both runs to finish', async () => {
    const { rows } = await bed.db.query<Snapshot>('SELECT id, status, attempt, lease_owner FROM training_runs WHERE id = ANY($1) ORDER BY id', [ids]);
    for (const row of rows) if (row.lease_owner !== null) owners.get(row.id)!.add(row.lease_owner);
    const held = rows.filter((row) => HELD.includes(row.status));
    if (held.length === 2 && held[0]!.lease_owner !== held[1]!.lease_owner) sideBySide ??= rows;
    return rows.every((row) => TERMINAL_STATUSES.includes(row.status)) ? rows : undefined;
  }, { timeoutMs: 120_000, intervalMs: 100, context });

  for (const run of finished) {
    const view = await getRun(a, auth, run.id);
    assert.equal(view.status, 'succeeded', `${run.id}: ${JSON.stringify(view.error)}\n${context()}`);
    assert.equal(view.attempt, 1, `${run.id} was claimed once`);
    assert.equal(view.metrics?.steps, MAX_STEPS);
  }
  assert.ok(sideBySide, `at some poll both runs were held at once, by different workers\n${context()}`);
  t.diagnostic(`side by side: ${sideBySide.map((row) => `${row.id} ${row.status} by ${row.lease_owner}`).join('; ')}`);

  // Each run had one worker, and the two workers were the two processes.
  const pidOf = (owner: string) => Number(owner.split(':').at(-2));
  const ownerOf = ids.map((id) => {
    const seen = [...owners.get(id)!];
    assert.equal(seen.length, 1, `${id} was held by exactly one worker: ${seen.join(', ')}`);
    return seen[0]!;
  });
  assert.deepEqual(ownerOf.map(pidOf).sort(), [a.pid, b.pid].sort(), `one run trained in each process: ${ownerOf.join(', ')}`);

  // Trained exactly once: one claim each in the status history, and one "started" line across both logs.
  for (const id of ids) {
    const { rows } = await bed.db.query<{ data: { status: string; attempt: number } }>(
      "SELECT data FROM training_run_events WHERE run_id = $1 AND type = 'status' ORDER BY id", [id],
    );
    assert.deepEqual(rows.map((row) => row.data.status), ['queued', 'starting', 'running', 'succeeded'], `${id}'s status history`);
    assert.deepEqual(rows.map((row) => row.data.attempt), [0, 1, 1, 1], `${id}'s attempts`);
    const started = [a, b].flatMap((service) =>
      service.logLines().filter((line) => line.msg === 'training run started' && line.run === id).map(() => service.name));
    assert.equal(started.length, 1, `${id} started once, in ${started.join(', ')}\n${context()}`);
  }

  // The shared DATA_DIR: each run's LoRA is its own (its run id inside, different bytes from
  // the other's), and the process that did not train a run serves its file all the same.
  const loras = ids.map((id) => readSafetensors(path.join(bed.dataDir, 'runs', id, 'lora.safetensors')));
  ids.forEach((id, i) => assert.equal(loras[i]!.metadata['sdxl_lora_service.run_id'], id));
  assert.ok(!loras[0]!.data.equals(loras[1]!.data), 'different seeds trained different LoRAs');
  for (const [i, id] of ids.entries()) {
    const trainedBy: ServiceProcess = pidOf(ownerOf[i]!) === a.pid ? a : b;
    const other = trainedBy === a ? b : a;
    const view = await getRun(other, auth, id);
    const download = await other.request('GET', view.output!.lora_url, { headers: auth });
    assert.equal(download.status, 200, download.body);
    assert.equal(sha256(download.bytes), sha256(fs.readFileSync(path.join(bed.dataDir, 'runs', id, 'lora.safetensors'))), `${id}'s LoRA served by ${other.name}`);
  }

  const exits = await Promise.all([a.stop(), b.stop()]);
  assert.deepEqual(exits.map((exit) => exit.code), [0, 0], context());
});
