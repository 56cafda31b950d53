// The maintenance sweep on a real Postgres and DATA_DIR: what outlived its retention goes
// (old webhook messages with their attempts, expired Idempotency-Key records, old finished
// generations with their images' blobs, checkpoints of finished runs beyond
// KEEP_CHECKPOINTS, orphan blobs past their grace period with their thumbnails), and
// everything else stays; one replica runs each sweep, and the next is due an interval later.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { createMaintenanceRepository } from '../../src/repositories/maintenance.js';
import { createTrainingRunArtifactsRepository } from '../../src/repositories/training-run-artifacts.js';
import { createTrainingRunsRepository } from '../../src/repositories/training-runs.js';
import { BLOBS_SUBDIR, THUMBNAILS_SUBDIR } from '../../src/routes/v1/images/index.js';
import { ThumbnailCache } from '../../src/services/thumbnails.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { RUNS_SUBDIR } from '../../src/storage/run-file-store.js';
import { png } from '../support/images.js';
import { sample } from '../support/metrics.js';
import { filesBody } from '../support/multipart.js';
import { withTestApp, type TestApp } from '../helper.js';

const DAY_MS = 86_400_000;
const ago = (ms: number) => new Date(Date.now() - ms);

async function webhookMessage(ctx: TestApp, id: string, status: 'succeeded' | 'failed' | 'pending', completedAt: Date | null): Promise<void> {
  await ctx.db.query(
    `INSERT INTO webhook_messages (id, tenant_id, url, event_type, resource_type, resource_id, snapshot, status, created_at, completed_at)
     VALUES ($1, $2, 'https://example.com/hook', 'generation.succeeded', 'generation', 'gen_x', '{}', $3, coalesce($4, now()), $4)`,
    [id, ctx.tenantId, status, completedAt],
  );
  await ctx.db.query(`INSERT INTO webhook_attempts (message_id, url, started_at, status_code) VALUES ($1, 'https://example.com/hook', now(), 200)`, [id]);
}

async function generation(ctx: TestApp, id: string, completedAt: Date, imageSha256: string): Promise<void> {
  await ctx.db.query(
    `INSERT INTO generations (id, tenant_id, model_id, status, params, created_at, completed_at) VALUES ($1, $2, 'sdxl-tiny-demo', 'succeeded', '{}', $3, $3)`,
    [id, ctx.tenantId, completedAt],
  );
  await ctx.db.query(
    `INSERT INTO generation_images (generation_id, index, seed, width, height, sha256, byte_size) VALUES ($1, 0, 1, 64, 64, $2, 10)`,
    [id, imageSha256],
  );
}

/** A run with three checkpoints (artifacts and files), ended when `finished`. */
async function runWithCheckpoints(ctx: TestApp, name: string, finished: boolean): Promise<{ id: string; dir: string }> {
  const run = await ctx.db.transaction((tx) => createTrainingRunsRepository(tx).insert({
    tenantId: ctx.tenantId, datasetId: 'ds_01JD3Q5V8Z6ZK2W7M4N1T0X9PA', modelId: 'sdxl-tiny-demo', name, params: {}, metadata: {},
    triggerToken: 'ohwx', classWord: 'dog', images: [],
  }));
  if (finished) await ctx.db.query(`UPDATE training_runs SET status = 'failed', completed_at = now() WHERE id = $1`, [run.id]);
  const dir = path.join(ctx.config.dataDir, RUNS_SUBDIR, run.id, 'checkpoints');
  fs.mkdirSync(dir, { recursive: true });
  for (const step of [5, 10, 15]) {
    const file = `step-${String(step).padStart(6, '0')}.safetensors`;
    fs.writeFileSync(path.join(dir, file), 'checkpoint');
    await createTrainingRunArtifactsRepository(ctx.db).record({ run_id: run.id, name: `checkpoints/${file}`, kind: 'checkpoint', byte_size: 10, sha256: 'c'.repeat(64), step });
  }
  return { id: run.id, dir };
}

test('a sweep removes what outlived its retention and keeps everything else', async (t) => {
  const ctx = await withTestApp(t, {
    env: { MAINTENANCE_INTERVAL_MS: '0', GENERATION_RETENTION_DAYS: '30', KEEP_CHECKPOINTS: '1', TRAINING_SLOTS: '0', GENERATION_SLOTS: '0' },
  });
  const dataDir = ctx.config.dataDir;
  const blobs = new FsBlobStore(path.join(dataDir, BLOBS_SUBDIR));
  const thumbnails = new ThumbnailCache(path.join(dataDir, THUMBNAILS_SUBDIR));

  await webhookMessage(ctx, 'msg_old', 'succeeded', ago(100 * DAY_MS));
  await webhookMessage(ctx, 'msg_old_failed', 'failed', ago(91 * DAY_MS));
  await webhookMessage(ctx, 'msg_recent', 'succeeded', ago(10 * DAY_MS));
  await webhookMessage(ctx, 'msg_pending', 'pending', null);

  const idempotency = `INSERT INTO idempotency_keys (tenant_id, key, fingerprint, claim_token, response_status, response_body, created_at, completed_at)
                       VALUES ($1, $2, 'f', 't', $3, $4, $5, $6)`;
  await ctx.db.query(idempotency, [ctx.tenantId, 'answered-2-days-ago', 201, '{}', ago(2 * DAY_MS), ago(2 * DAY_MS)]);
  await ctx.db.query(idempotency, [ctx.tenantId, 'abandoned-2-days-ago', null, null, ago(2 * DAY_MS), null]);
  await ctx.db.query(idempotency, [ctx.tenantId, 'answered-an-hour-ago', 201, '{}', ago(3_600_000), ago(3_600_000)]);

  const oldImage = await blobs.put(Buffer.from('old generation image'));
  const recentImage = await blobs.put(Buffer.from('recent generation image'));
  await generation(ctx, 'gen_old', ago(31 * DAY_MS), oldImage.sha256);
  await generation(ctx, 'gen_recent', ago(DAY_MS), recentImage.sha256);

  const finished = await runWithCheckpoints(ctx, 'finished', true);
  const training = await runWithCheckpoints(ctx, 'still training', false);

  // Orphans: one an interrupted upload left two hours ago (with a thumbnail), one maybe still being committed.
  const oldOrphan = await blobs.put(Buffer.from('orphan from an interrupted upload'));
  const hoursAgo = ago(2 * 3_600_000);
  fs.utimesSync(blobs.pathOf(oldOrphan.sha256), hoursAgo, hoursAgo);
  fs.mkdirSync(path.dirname(thumbnails.pathOf(oldOrphan.sha256)), { recursive: true });
  fs.writeFileSync(thumbnails.pathOf(oldOrphan.sha256), 'thumbnail');
  const freshOrphan = await blobs.put(Buffer.from('orphan of an upload in progress'));
  // A dataset image: referenced, and old enough, it stays.
  const dataset = await ctx.app.inject({ method: 'POST', url: '/v1/datasets', headers: ctx.auth, payload: { name: 'kept', class_word: 'dog' } });
  const body = filesBody([{ name: 'kept.png', contentType: 'image/png', data: await png({ width: 256, height: 256, seed: 5 }) }]);
  const uploaded = await ctx.app.inject({ method: 'POST', url: `/v1/datasets/${dataset.json().id}/images`, headers: { ...ctx.auth, ...body.headers }, payload: body.payload });
  assert.equal(uploaded.statusCode, 201, uploaded.body);
  const kept = uploaded.json().data[0].sha256 as string;
  fs.utimesSync(blobs.pathOf(kept), hoursAgo, hoursAgo);

  const report = await ctx.app.maintenance.service.sweep(Date.now() + 60_000);
  assert.deepEqual(report, { webhook_messages: 2, idempotency_keys: 2, generations: 1, checkpoints: 2, blobs: 2, incomplete: false });

  const ids = async (sql: string) => (await ctx.db.query<{ id: string }>(sql)).rows.map((row) => row.id).sort();
  assert.deepEqual(await ids('SELECT id FROM webhook_messages'), ['msg_pending', 'msg_recent']);
  assert.deepEqual(await ids('SELECT DISTINCT message_id AS id FROM webhook_attempts'), ['msg_pending', 'msg_recent'], 'attempts go with their message');
  assert.deepEqual(await ids('SELECT key AS id FROM idempotency_keys'), ['answered-an-hour-ago']);
  assert.deepEqual(await ids('SELECT id FROM generations'), ['gen_recent']);
  assert.equal(await blobs.exists(oldImage.sha256), false, "the purged generation's image is gone");
  assert.equal(await blobs.exists(recentImage.sha256), true);

  assert.deepEqual(fs.readdirSync(finished.dir), ['step-000015.safetensors'], 'a finished run keeps its newest checkpoint');
  assert.deepEqual((await createTrainingRunArtifactsRepository(ctx.db).ofKind(finished.id, 'checkpoint')).map((a) => a.name), ['checkpoints/step-000015.safetensors']);
  assert.equal(fs.readdirSync(training.dir).length, 3, 'a run in progress keeps all of its');
  assert.equal((await createTrainingRunArtifactsRepository(ctx.db).ofKind(training.id, 'checkpoint')).length, 3);

  assert.equal(await blobs.exists(oldOrphan.sha256), false, 'an orphan past its grace period is gone');
  assert.equal(fs.existsSync(thumbnails.pathOf(oldOrphan.sha256)), false, 'with its thumbnail');
  assert.equal(await blobs.exists(freshOrphan.sha256), true, 'an orphan within its grace period stays');
  assert.equal(await blobs.exists(kept), true, 'a referenced blob stays');

  const again = await ctx.app.maintenance.service.sweep(Date.now() + 60_000);
  assert.deepEqual(again, { webhook_messages: 0, idempotency_keys: 0, generations: 0, checkpoints: 0, blobs: 0, incomplete: false }, 'nothing left to remove');
});

test('one replica runs each sweep; the next is due MAINTENANCE_INTERVAL_MS after it ends; /metrics counts what it removed', async (t) => {
  const ctx = await withTestApp(t, { env: { MAINTENANCE_INTERVAL_MS: '0', TRAINING_SLOTS: '0' } });
  const sweeps = createMaintenanceRepository(ctx.db);
  await ctx.db.query(`UPDATE maintenance_sweeps SET next_run_at = now(), lease_owner = NULL, lease_expires_at = NULL`);
  const claimed = await sweeps.claim('replica-a', 60_000);
  assert.ok(claimed !== null, 'due: claimed');
  assert.equal(await sweeps.claim('replica-b', 60_000), null, 'held by another replica');
  await sweeps.finish(claimed.id, 'replica-a', 3_600_000, { blobs: 3 });
  assert.equal(await sweeps.claim('replica-b', 60_000), null, 'not due again yet');
  const state = await sweeps.state();
  assert.deepEqual(state.last_removed, { blobs: 3 });
  const dueIn = state.next_run_at.getTime() - state.finished_at!.getTime();
  assert.ok(Math.abs(dueIn - 3_600_000) < 1000, `due an interval after it ended (${dueIn} ms)`);

  // A process with the sweep on claims it when due and runs it.
  await ctx.db.query(`UPDATE maintenance_sweeps SET next_run_at = now() - interval '1 second'`);
  await webhookMessage(ctx, 'msg_swept_by_the_worker', 'succeeded', ago(100 * DAY_MS));
  const worker = await withTestApp(t, { env: { MAINTENANCE_INTERVAL_MS: '3600000', TRAINING_SLOTS: '0', GENERATION_SLOTS: '0' } });
  for (let i = 0; (await sweeps.state()).last_removed?.webhook_messages !== 1; i++) {
    assert.ok(i < 100, 'the worker ran the sweep within 10 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const metrics = (await worker.app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.equal(sample(metrics, 'sdxl_maintenance_removed_total{kind="webhook_messages"}'), 1);
});
