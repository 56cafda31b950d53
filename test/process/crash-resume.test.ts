// A training run survives the death of its process. The service runs as a child process
// (src/server.ts) on a real Postgres database and DATA_DIR; a run trains on a demo model
// (SDXL, and SD 1.5 for kill -9; and a full fine-tune of SDXL's, method full, for kill -9)
// until it has written a checkpoint, then its process is
//  - killed with SIGKILL: nothing is handed back, the run stays `running` under a lease
//    that nobody renews; a new process claims it once that lease has run out
//    (TRAINING_LEASE_MS=2000) and resumes it from its newest checkpoint (attempt 2);
//  - stopped with SIGTERM: the process checkpoints the run at its next step, hands it back
//    as `queued` and exits 0; the next process resumes it from that checkpoint (attempt 2).
// Either way the resumed run's LoRA files (a full run: its model's single file, and its
// diffusers folder's UNet) hold exactly the tensors, byte for byte, of an uninterrupted run
// with the same dataset and params, and the same metadata but for the run id.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import {
  checkpointStep,
  checkpointsOf,
  createRun,
  datasetWithPhotos,
  getRun,
  issueKey,
  openDatabase,
  pollUntil,
  readSafetensors,
  startService,
  waitForFinish,
  useProcessTestBed,
  type ServiceProcess,
} from './service-process.js';

/** About 80 ms a step on a 2-core CPU: long enough to catch the run after its first checkpoint (step 5) with time to spare. */
const MAX_STEPS = 60;
const LEASE_MS = 2000;
const RUN_ID_KEY = 'sdxl_lora_service.run_id';
const SDXL = 'sdxl-tiny-demo';
const SD15 = 'sd15-tiny-demo';

/** What a scenario trains, and the files that must come out the same: each with whether it names its run in its metadata. */
interface Scenario {
  name: string;
  model: string;
  /** Small and seeded: the same params on the same data must train the same files. */
  params: Record<string, unknown>;
  files: Array<{ name: string; metadata: boolean }>;
}

const LORA_FILES = [{ name: 'lora.safetensors', metadata: true }, { name: 'lora_peft.safetensors', metadata: true }];
const LORA_PARAMS = { resolution: 128, max_steps: MAX_STEPS, checkpoint_every: 5, save_peft: true, rank: 4, alpha: 4, seed: 1234 };
const SDXL_LORA: Scenario = { name: 'SDXL LoRA', model: SDXL, params: LORA_PARAMS, files: LORA_FILES };
const SD15_LORA: Scenario = { name: 'SD 1.5 LoRA', model: SD15, params: LORA_PARAMS, files: LORA_FILES };
const stepsOf = (scenario: Scenario) => scenario.params.max_steps as number;
/**
 * A full fine-tune in float32 at 64 px (a step costs several LoRA steps: fewer of them), without class images (the
 * base model's: not what a resume changes); the newest checkpoint only.
 */
const SDXL_FULL: Scenario = {
  name: 'SDXL full fine-tune',
  model: SDXL,
  params: { method: 'full', resolution: 64, max_steps: 30, checkpoint_every: 5, save_dtype: 'float32', prior_preservation: null, seed: 1234 },
  files: [{ name: 'model.safetensors', metadata: true }, { name: 'model/unet/diffusion_pytorch_model.safetensors', metadata: false }],
};

const bed = useProcessTestBed('sdxl-crash-resume-');

function start(t: TestContext, name: string): Promise<ServiceProcess> {
  return startService(t, { name, databaseUrl: bed.database.url, dataDir: bed.dataDir, env: { TRAINING_LEASE_MS: String(LEASE_MS), TRAINING_SLOTS: '1' } });
}

interface RunRow {
  status: string;
  attempt: number;
  lease_owner: string | null;
  lease_expires_at: Date | null;
  progress: { phase: string; step: number } | null;
}

async function runRow(id: string): Promise<RunRow> {
  const { rows } = await bed.db.query<RunRow>('SELECT status, attempt, lease_owner, lease_expires_at, progress FROM training_runs WHERE id = $1', [id]);
  assert.ok(rows[0], `run ${id} is stored`);
  return rows[0];
}

interface EventRow {
  type: string;
  data: { status?: string; attempt?: number; message?: string };
  created_at: Date;
}

async function events(id: string): Promise<EventRow[]> {
  return (await bed.db.query<EventRow>('SELECT type, data, created_at FROM training_run_events WHERE run_id = $1 ORDER BY id', [id])).rows;
}

// ---- what the tests share: a tenant, a dataset, and one uninterrupted run to compare with

let shared: Promise<{ auth: { authorization: string }; datasetId: string }> | undefined;

/** The tenant and its dataset, made through the first service that asks (the database is migrated by then). */
function tenantAndDataset(service: ServiceProcess) {
  shared ??= (async () => {
    const auth = await issueKey(bed.db);
    return { auth, datasetId: await datasetWithPhotos(service, auth, 3) };
  })();
  shared.catch(() => (shared = undefined));
  return shared;
}

const references = new Map<string, Promise<string>>();

/** The id of a run of the scenario with the same dataset and params that nothing interrupted, trained once on `service`. */
function uninterruptedRun(service: ServiceProcess, scenario: Scenario): Promise<string> {
  let reference = references.get(scenario.name);
  if (reference !== undefined) return reference;
  reference = (async () => {
    const { auth, datasetId } = await tenantAndDataset(service);
    const run = await createRun(service, auth, datasetId, scenario.params, scenario.model);
    const done = await waitForFinish(service, auth, run.id);
    assert.equal(done.status, 'succeeded', `${JSON.stringify(done.error)}\n${service.tail()}`);
    assert.equal(done.attempt, 1);
    assert.equal(done.metrics?.steps, stepsOf(scenario));
    return run.id;
  })();
  references.set(scenario.name, reference);
  reference.catch(() => references.delete(scenario.name));
  return reference;
}

// ---- steps of both scenarios

/** Creates a run of the scenario on `service` and waits until it is training and has written a checkpoint, well before its end. */
async function runUntilCheckpointed(t: TestContext, service: ServiceProcess, scenario: Scenario): Promise<string> {
  const { auth, datasetId } = await tenantAndDataset(service);
  const run = await createRun(service, auth, datasetId, scenario.params, scenario.model);
  const row = await pollUntil('the run to write a checkpoint while it trains', async () => {
    const current = await runRow(run.id);
    assert.ok(['queued', 'starting', 'running'].includes(current.status), `the run ended before it could be interrupted: ${current.status}\n${service.tail()}`);
    return current.status === 'running' && checkpointsOf(bed.dataDir, run.id).length > 0 ? current : undefined;
  }, { intervalMs: 50, context: () => service.tail() });
  const step = row.progress?.step ?? 0;
  const steps = stepsOf(scenario);
  assert.ok(step < steps - 5, `caught at step ${step} of ${steps}: too near the end to prove a resume; raise max_steps`);
  t.diagnostic(`run ${run.id} interrupted at about step ${step} of ${steps} (checkpoints: ${checkpointsOf(bed.dataDir, run.id).join(', ')})`);
  return run.id;
}

/** The resumed run succeeded on its second claim, from `checkpoint`, with all its `steps`. */
async function assertResumed(service: ServiceProcess, runId: string, checkpoint: string, steps = MAX_STEPS): Promise<EventRow[]> {
  const { auth } = await tenantAndDataset(service);
  const done = await waitForFinish(service, auth, runId);
  assert.equal(done.status, 'succeeded', `${JSON.stringify(done.error)}\n${service.tail()}`);
  assert.equal(done.attempt, 2, 'claimed a second time, not more');
  assert.equal(done.metrics?.steps, steps);
  const all = await events(runId);
  const claims = all.filter((e) => e.type === 'status' && e.data.status === 'starting');
  assert.deepEqual(claims.map((e) => e.data.attempt), [1, 2], 'two claims');
  const logs = all.filter((e) => e.type === 'log').map((e) => e.data.message ?? '');
  assert.ok(
    logs.some((message) => message.includes(`attempt 2 on cpu`) && message.includes(`resuming from checkpoints/${checkpoint}`)),
    `the second attempt resumed from checkpoints/${checkpoint}; the run's log:\n${logs.join('\n')}`,
  );
  return all;
}

/** The files of the two runs hold the same tensors, byte for byte, and the same metadata but for the run id. */
function assertSameFiles(resumedId: string, referenceId: string, files: Scenario['files']): void {
  for (const { name, metadata } of files) {
    const resumed = readSafetensors(path.join(bed.dataDir, 'runs', resumedId, name));
    const expected = readSafetensors(path.join(bed.dataDir, 'runs', referenceId, name));
    assert.ok(expected.tensors.size > 0, `${name} holds tensors`);
    assert.deepEqual([...resumed.tensors.keys()].sort(), [...expected.tensors.keys()].sort(), `${name}: the same tensor names`);
    for (const [tensor, want] of expected.tensors) {
      const got = resumed.tensors.get(tensor)!;
      assert.equal(got.dtype, want.dtype, `${name} ${tensor}: dtype`);
      assert.deepEqual(got.shape, want.shape, `${name} ${tensor}: shape`);
      assert.ok(got.data.equals(want.data), `${name} ${tensor}: the resumed run's bytes differ from the uninterrupted run's`);
    }
    assert.ok(resumed.data.equals(expected.data), `${name}: the data sections are identical`);
    if (!metadata) continue;

    assert.equal(resumed.metadata[RUN_ID_KEY], resumedId, `${name}: names its own run`);
    assert.equal(expected.metadata[RUN_ID_KEY], referenceId, `${name}: names its own run`);
    const { [RUN_ID_KEY]: _a, ...resumedRest } = resumed.metadata;
    const { [RUN_ID_KEY]: _b, ...expectedRest } = expected.metadata;
    assert.deepEqual(resumedRest, expectedRest, `${name}: the metadata differs only in ${RUN_ID_KEY}`);
    if (name.startsWith('lora')) assert.equal(resumed.metadata.ss_steps, String(MAX_STEPS), `${name}: ss_steps`);
  }
}

// ---- the scenarios

/** kill -9 mid-run, a new process resumes the run once its lease has run out, to the uninterrupted run's bytes. */
async function killAndResume(t: TestContext, scenario: Scenario): Promise<void> {
  const first = await start(t, 'first (killed)');
  const runId = await runUntilCheckpointed(t, first, scenario);

  const killed = await first.kill();
  assert.equal(killed.signal, 'SIGKILL');
  // Nothing ran on the way out: the run is still held by the dead worker.
  const orphan = await runRow(runId);
  assert.equal(orphan.status, 'running', 'left running by the dead process (if it finished first, raise MAX_STEPS)');
  assert.equal(orphan.attempt, 1);
  assert.ok(orphan.lease_owner?.includes(`:${first.pid}:`), `held by the killed process (pid ${first.pid}): ${orphan.lease_owner}`);
  assert.ok(orphan.lease_expires_at !== null);
  const newest = checkpointsOf(bed.dataDir, runId).at(-1)!;
  t.diagnostic(`kill -9: the newest checkpoint left behind is ${newest}`);

  const second = await start(t, 'second');
  const all = await assertResumed(second, runId, newest, stepsOf(scenario));
  const reclaim = all.find((e) => e.type === 'status' && e.data.status === 'starting' && e.data.attempt === 2)!;
  assert.ok(
    reclaim.created_at.getTime() > orphan.lease_expires_at.getTime(),
    `claimed again (${reclaim.created_at.toISOString()}) only after the dead worker's lease ran out (${orphan.lease_expires_at.toISOString()})`,
  );
  assert.deepEqual(
    all.filter((e) => e.type === 'status').map((e) => e.data.status),
    ['queued', 'starting', 'running', 'starting', 'running', 'succeeded'],
    'never handed back: the second claim took the expired lease',
  );

  assertSameFiles(runId, await uninterruptedRun(second, scenario), scenario.files);
  if (scenario.params.method === 'full') {
    const { auth } = await tenantAndDataset(second);
    const done = await getRun(second, auth, runId);
    const model = await second.request('GET', `/v1/models/${done.output?.model_id}`, { headers: auth });
    assert.equal(model.status, 200, model.body);
    assert.equal(model.json<{ training_run_id: string }>().training_run_id, runId, 'the resumed run registered its model, once');
  }
  const stopped = await second.stop();
  assert.equal(stopped.code, 0, second.tail());
}

test('kill -9 while a run trains: another process claims it once the lease runs out, resumes it (attempt 2) and trains the same LoRA bytes', { timeout: 240_000 }, (t) =>
  killAndResume(t, SDXL_LORA));

test('kill -9 while an SD 1.5 run trains: resumed by another process to the same LoRA bytes', { timeout: 240_000 }, (t) =>
  killAndResume(t, SD15_LORA));

test('kill -9 while a full fine-tune trains: resumed by another process to the same model file, byte for byte', { timeout: 240_000 }, (t) =>
  killAndResume(t, SDXL_FULL));

test('SIGTERM while a run trains: the process checkpoints it, hands it back as queued and exits 0; the next process resumes it (attempt 2) to the same LoRA bytes', { timeout: 240_000 }, async (t) => {
  const first = await start(t, 'first (SIGTERM)');
  const runId = await runUntilCheckpointed(t, first, SDXL_LORA);

  const exit = await first.stop();
  assert.equal(exit.code, 0, `exits 0 after SIGTERM\n${first.tail()}`);
  assert.match(first.output(), /"msg":"training run checkpointed and handed back \(shutting down\)"/, first.tail());
  const handedBack = await runRow(runId);
  assert.equal(handedBack.status, 'queued', 'handed back to the queue');
  assert.equal(handedBack.lease_owner, null);
  assert.equal(handedBack.attempt, 1);
  const logs = (await events(runId)).filter((e) => e.type === 'log').map((e) => e.data.message ?? '');
  const stoppedAt = logs.map((message) => /^stopped at step (\d+) \(the process is shutting down\)/.exec(message)).find((m) => m !== null);
  assert.ok(stoppedAt, `the run's log says where it stopped:\n${logs.join('\n')}`);
  const step = Number(stoppedAt[1]);
  assert.ok(step < MAX_STEPS, `stopped before the end (step ${step})`);
  const newest = checkpointsOf(bed.dataDir, runId).at(-1)!;
  assert.equal(checkpointStep(newest), step, 'a checkpoint written at the step it stopped');
  t.diagnostic(`SIGTERM: checkpointed at step ${step}, handed back`);

  const second = await start(t, 'second');
  const all = await assertResumed(second, runId, newest);
  assert.deepEqual(
    all.filter((e) => e.type === 'status').map((e) => e.data.status),
    ['queued', 'starting', 'running', 'queued', 'starting', 'running', 'succeeded'],
  );

  assertSameFiles(runId, await uninterruptedRun(second, SDXL_LORA), SDXL_LORA.files);
  const stopped = await second.stop();
  assert.equal(stopped.code, 0, second.tail());
});
