// Training runs through the service and the worker, on the built-in demo model: a run is
// created from a dataset's snapshot, claimed, trained on the native thread and succeeds
// with its LoRA file; a cancel stops a running one with a checkpoint written.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { TrainingWorker } from '../../src/jobs/training-worker.js';
import { createTrainingRunsRepository, type TrainingRunRow } from '../../src/repositories/training-runs.js';
import { BLOBS_SUBDIR } from '../../src/routes/v1/images/index.js';
import { CPU_PRECISION } from '../../src/schemas/training-params.js';
import { TrainingRunsService } from '../../src/services/training-runs.js';
import { RunEventsBus } from '../../src/services/run-events-bus.js';
import { FsRunFileStore } from '../../src/storage/fs-run-file-store.js';
import { TRAINING_CACHE_SUBDIR } from '../../src/storage/run-file-store.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { issueApiKey } from '../../src/services/api-keys.js';
import { testTenantName, withTestApp, type TestApp } from '../helper.js';
import { createDataset, upload } from '../support/images-api.js';
import { png } from '../support/images.js';
import { filesBody } from '../support/multipart.js';
import { ProblemError } from '../../src/errors.js';
import { ClassImagesService } from '../../src/services/class-images.js';
import { AddressPolicy } from '../../src/webhooks/address-policy.js';

const QUICK = { resolution: 64, max_steps: 3, checkpoint_every: 0, save_peft: false } as const;

async function setUp(t: Parameters<typeof withTestApp>[0]) {
  // The app's own training worker is off: this test runs one by hand.
  const ctx = await withTestApp(t, { env: { TRAINING_SLOTS: '0' } });
  const datasetId = await createDataset(ctx);
  const uploaded = await upload(ctx, datasetId, filesBody([
    { name: 'a.png', data: await png({ width: 256, height: 256, seed: 1 }) },
    { name: 'a.txt', data: 'a photo of ohwx dog on grass' },
    { name: 'b.png', data: await png({ width: 256, height: 320, seed: 2 }) },
  ]));
  assert.equal(uploaded.statusCode, 201, uploaded.body);
  const runsDir = path.join(ctx.config.dataDir, 'runs');
  const newWorker = () => {
    const created = new TrainingWorker({
      db: ctx.db,
      models: ctx.app.services.models,
      blobs: new FsBlobStore(path.join(ctx.config.dataDir, BLOBS_SUBDIR)),
      classImages: new ClassImagesService(ctx.db, new FsBlobStore(path.join(ctx.config.dataDir, BLOBS_SUBDIR)), ctx.app.generations.resident),
      files: new FsRunFileStore(runsDir),
      cacheDir: path.join(ctx.config.dataDir, TRAINING_CACHE_SUBDIR),
      bus: new RunEventsBus(),
      logger: ctx.app.log,
      devices: { devices: ['cpu'], runsPerDevice: 1, slots: 1 },
      maxAttempts: 3,
      leaseMs: 30_000,
      heartbeatMs: 200,
      pollMs: 100,
    });
    t.after(() => created.stop());
    return created;
  };
  const worker = newWorker();
  const service = new TrainingRunsService(ctx.db, ctx.app.services.models, {
    serverPrecision: CPU_PRECISION,
    webhookPolicy: new AddressPolicy({ allowHttp: false, allowedHosts: [] }), tenantMaxQueuedRuns: 10, tenantMaxModelBytes: 1024 ** 4,
    files: new FsRunFileStore(runsDir),
    qualityMetrics: ctx.app.services.qualityMetrics,
    created: () => worker.wake(),
  });
  return { ctx, datasetId, runsDir, worker, service, newWorker };
}

async function waitFor(ctx: TestApp, runId: string, done: (run: TrainingRunRow) => boolean): Promise<TrainingRunRow> {
  const runs = createTrainingRunsRepository(ctx.db);
  for (let i = 0; i < 1200; i++) {
    const run = (await runs.get(ctx.tenantId, runId))!;
    if (done(run)) return run;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.fail(`run ${runId} did not get there`);
}

test('a run trains on the demo model and succeeds with its LoRA file; the snapshot keeps the captions of creation', async (t) => {
  const { ctx, datasetId, runsDir, worker, service } = await setUp(t);
  const created = await service.create(ctx.tenantId, { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: QUICK });
  assert.equal(created.status, 'queued');
  assert.equal((created.params as { rank: number }).rank, 16, 'resolved params stored');
  const snapshot = await createTrainingRunsRepository(ctx.db).images(created.id);
  assert.deepEqual(snapshot.map((image) => image.caption).sort(), ['a photo of ohwx dog', 'a photo of ohwx dog on grass']);

  worker.start();
  const run = await waitFor(ctx, created.id, (r) => ['succeeded', 'failed', 'canceled'].includes(r.status));
  assert.equal(run.status, 'succeeded', `${run.error_code}: ${run.error_message}`);
  assert.equal(run.attempt, 1);
  assert.equal(run.metrics?.steps, 3);
  assert.ok(fs.statSync(path.join(runsDir, created.id, 'lora.safetensors')).size > 0);
  assert.equal((run.progress as { total_steps: number }).total_steps, 3);
});

test('cancel stops a running run at its next step with a checkpoint written', async (t) => {
  const { ctx, datasetId, runsDir, worker, service } = await setUp(t);
  const created = await service.create(ctx.tenantId, { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { ...QUICK, max_steps: 100_000 } });
  worker.start();
  await waitFor(ctx, created.id, (r) => r.status === 'running');
  worker.cancel(created.id);
  const run = await waitFor(ctx, created.id, (r) => r.status !== 'running');
  assert.equal(run.status, 'canceled');
  assert.ok(fs.readdirSync(path.join(runsDir, created.id, 'checkpoints')).some((name) => /^step-\d+\.safetensors$/.test(name)));
});

test("creating a run refuses an unknown model (422 naming model), an empty dataset and another tenant's", async (t) => {
  const { ctx, datasetId, service } = await setUp(t);
  await assert.rejects(service.create(ctx.tenantId, { dataset_id: datasetId, model: 'nope' }), (error: unknown) => {
    assert.ok(error instanceof ProblemError);
    assert.equal(error.status, 422);
    assert.deepEqual(error.errors?.map((e) => e.field), ['model']);
    return true;
  });
  const empty = await createDataset(ctx);
  await assert.rejects(service.create(ctx.tenantId, { dataset_id: empty, model: 'sdxl-tiny-demo' }), (error: unknown) => error instanceof ProblemError && error.status === 409);
  const otherTenant = (await issueApiKey(ctx.db, testTenantName())).tenant.id;
  await assert.rejects(service.create(otherTenant, { dataset_id: datasetId, model: 'sdxl-tiny-demo' }), (error: unknown) => error instanceof ProblemError && error.status === 404);
});

test('on shutdown a running run is checkpointed and handed back; another worker resumes it (attempt 2) to the end', async (t) => {
  const { ctx, datasetId, runsDir, worker, service, newWorker } = await setUp(t);
  const created = await service.create(ctx.tenantId, { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { ...QUICK, max_steps: 30 } });
  worker.start();
  await waitFor(ctx, created.id, (r) => r.status === 'running');
  await worker.stop();
  const handedBack = await waitFor(ctx, created.id, () => true);
  assert.equal(handedBack.status, 'queued');
  assert.equal(handedBack.lease_owner, null);
  assert.ok(fs.readdirSync(path.join(runsDir, created.id, 'checkpoints')).length > 0, 'a checkpoint to resume from');
  // What a process killed while writing a checkpoint leaves behind (io/safetensors.cpp's temp name).
  const halfWritten = path.join(runsDir, created.id, 'checkpoints', 'step-999999.safetensors.tmp-4242-0');
  fs.writeFileSync(halfWritten, 'truncated');

  newWorker().start();
  const run = await waitFor(ctx, created.id, (r) => ['succeeded', 'failed', 'canceled'].includes(r.status));
  assert.equal(run.status, 'succeeded', `${run.error_code}: ${run.error_message}`);
  assert.equal(run.attempt, 2);
  assert.equal(run.interruptions, 0, 'a hand-back is not an interruption');
  assert.equal(run.metrics?.steps, 30);
  assert.equal(fs.existsSync(halfWritten), false, 'the half-written file was removed before resuming');
});

test('a run whose process died TRAINING_MAX_ATTEMPTS times fails with attempts_exhausted, and says so in its log', async (t) => {
  const { ctx, datasetId, worker, service } = await setUp(t);
  const created = await service.create(ctx.tenantId, { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: QUICK });
  // As if three processes had died while training it: two claims after an expired lease, and
  // the third process's lease has just run out, so this claim is the third interruption.
  await ctx.db.query(
    `UPDATE training_runs SET status = 'running', attempt = 3, interruptions = 2, lease_owner = 'dead',
            lease_expires_at = now() - interval '1 second' WHERE id = $1`,
    [created.id],
  );
  worker.start();
  const run = await waitFor(ctx, created.id, (r) => ['succeeded', 'failed', 'canceled'].includes(r.status));
  assert.equal(run.status, 'failed');
  assert.equal(run.attempt, 4);
  assert.equal(run.interruptions, 3);
  assert.equal(run.error_code, 'attempts_exhausted');
  const { rows } = await ctx.db.query<{ type: string; data: { message?: string; status?: string } }>(
    'SELECT type, data FROM training_run_events WHERE run_id = $1 ORDER BY id', [created.id],
  );
  assert.deepEqual(rows.filter((e) => e.type === 'status').map((e) => e.data.status), ['queued', 'running', 'starting', 'failed']);
  assert.ok(rows.some((e) => e.type === 'log' && /interrupted 3 times, TRAINING_MAX_ATTEMPTS is 3/.test(e.data.message ?? '')));
});

test('graceful hand-backs do not use up TRAINING_MAX_ATTEMPTS: a run handed back five times still trains', async (t) => {
  const { ctx, datasetId, worker, service } = await setUp(t);
  const created = await service.create(ctx.tenantId, { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: QUICK });
  // Five earlier claims, each ended by a shutdown that handed the run back as queued.
  await ctx.db.query('UPDATE training_runs SET attempt = 5 WHERE id = $1', [created.id]);
  worker.start();
  const run = await waitFor(ctx, created.id, (r) => ['succeeded', 'failed', 'canceled'].includes(r.status));
  assert.equal(run.status, 'succeeded', `${run.error_code}: ${run.error_message}`);
  assert.equal(run.attempt, 6);
  assert.equal(run.interruptions, 0);
});
