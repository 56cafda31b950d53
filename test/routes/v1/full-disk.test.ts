// A full disk, on a real small file system (a tmpfs holding DATA_DIR, filled by the test):
//  - an upload that meets it (ENOSPC) is a 507 problem naming the file, and stores nothing:
//    no image row, no blob, no partial file;
//  - below DATA_DIR_MIN_FREE_BYTES, uploads and new training runs are refused with a 507
//    naming the floor before anything is written, and taken again once room is made;
//  - /metrics shows the free bytes and the floor;
//  - a training run whose checkpoint meets it fails with the code disk_full, the partial file
//    removed and its earlier checkpoint whole.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { png } from '../../support/images.js';
import { sample } from '../../support/metrics.js';
import { filesBody } from '../../support/multipart.js';
import { readSafetensors } from '../../support/safetensors.js';
import { SmallFilesystem } from '../../support/small-filesystem.js';
import { withTestApp, type TestApp } from '../../helper.js';

const MiB = 1024 * 1024;
const INSUFFICIENT_STORAGE = 'tag:sdxl-lora-service,2026:problem:insufficient-storage';
const skip = SmallFilesystem.skipReason();

/** Every file under `dir`, relative to it. */
function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath ?? entry.path, entry.name)));
}

async function createDataset(ctx: TestApp): Promise<string> {
  const response = await ctx.app.inject({ method: 'POST', url: '/v1/datasets', headers: ctx.auth, payload: { name: 'full disk', class_word: 'dog' } });
  assert.equal(response.statusCode, 201, response.body);
  return response.json().id as string;
}

async function upload(ctx: TestApp, datasetId: string, files: Array<{ name: string; seed: number }>) {
  const body = filesBody(await Promise.all(files.map(async ({ name, seed }) => ({
    name, contentType: 'image/png', data: await png({ width: 512, height: 512, seed }),
  }))));
  return ctx.app.inject({ method: 'POST', url: `/v1/datasets/${datasetId}/images`, headers: { ...ctx.auth, ...body.headers }, payload: body.payload });
}

async function imageCount(ctx: TestApp, datasetId: string): Promise<number> {
  return (await ctx.app.inject({ method: 'GET', url: `/v1/datasets/${datasetId}/images?limit=100`, headers: ctx.auth })).json().data.length;
}

test('an upload that meets a full disk is a 507 naming the file and stores nothing', { skip }, async (t) => {
  const disk = SmallFilesystem.mount(t, 32 * MiB);
  const ctx = await withTestApp(t, { env: { DATA_DIR: disk.dir, DATA_DIR_MIN_FREE_BYTES: '0', TRAINING_SLOTS: '0' } });
  const datasetId = await createDataset(ctx);
  assert.equal((await upload(ctx, datasetId, [{ name: 'first.png', seed: 1 }])).statusCode, 201);
  const blobs = path.join(disk.dir, 'blobs');
  const before = filesUnder(blobs);
  assert.equal(before.length, 1);

  // Room for a third of a 512 px noise PNG (about 770 KiB): the first of the two files already fails.
  disk.fill(256 * 1024);
  const refused = await upload(ctx, datasetId, [{ name: 'second.png', seed: 2 }, { name: 'third.png', seed: 3 }]);
  assert.equal(refused.statusCode, 507, refused.body);
  assert.match(String(refused.headers['content-type']), /^application\/problem\+json/);
  const problem = refused.json();
  assert.equal(problem.type, INSUFFICIENT_STORAGE);
  assert.match(problem.detail, /second\.png could not be stored/);
  assert.deepEqual(problem.errors.map((e: { field: string; message: string }) => [e.field, e.message]), [['files', 'second.png: no room left to store it']]);
  assert.equal(await imageCount(ctx, datasetId), 1, 'no image row of the refused request');
  assert.deepEqual(filesUnder(blobs), before, 'no blob and no partial file of the refused request');

  const metrics = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body;
  const free = sample(metrics, 'sdxl_data_dir_free_bytes');
  assert.ok(free !== undefined && free >= 0 && free <= 256 * 1024, `the free bytes of DATA_DIR: ${free}`);
  assert.equal(sample(metrics, 'sdxl_data_dir_min_free_bytes'), 0);

  disk.empty();
  assert.equal((await upload(ctx, datasetId, [{ name: 'second.png', seed: 2 }])).statusCode, 201, 'stored once there is room');
});

test('below DATA_DIR_MIN_FREE_BYTES, uploads and new training runs are refused with a 507 before anything is written, until room is made', { skip }, async (t) => {
  const disk = SmallFilesystem.mount(t, 32 * MiB);
  const ctx = await withTestApp(t, { env: { DATA_DIR: disk.dir, DATA_DIR_MIN_FREE_BYTES: String(8 * MiB), TRAINING_SLOTS: '0' } });
  const datasetId = await createDataset(ctx);
  assert.equal((await upload(ctx, datasetId, [{ name: 'first.png', seed: 1 }])).statusCode, 201);

  disk.fill(4 * MiB);
  const refusals = [
    await upload(ctx, datasetId, [{ name: 'second.png', seed: 2 }]),
    await ctx.app.inject({ method: 'POST', url: '/v1/training-runs', headers: ctx.auth, payload: { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { max_steps: 2 } } }),
  ];
  for (const refused of refusals) {
    assert.equal(refused.statusCode, 507, refused.body);
    assert.equal(refused.json().type, INSUFFICIENT_STORAGE);
    assert.match(refused.json().detail, /below its floor of 8388608 \(DATA_DIR_MIN_FREE_BYTES\)/);
  }
  assert.equal(await imageCount(ctx, datasetId), 1);
  const runs = await ctx.app.inject({ method: 'GET', url: '/v1/training-runs', headers: ctx.auth });
  assert.deepEqual(runs.json().data, [], 'no run stored');
  const metrics = (await ctx.app.inject({ method: 'GET', url: '/metrics' })).body;
  assert.equal(sample(metrics, 'sdxl_data_dir_min_free_bytes'), 8 * MiB);

  disk.empty();
  assert.equal((await upload(ctx, datasetId, [{ name: 'second.png', seed: 2 }])).statusCode, 201, 'taken again once room is made');
});

test('a training run whose checkpoint meets a full disk fails with disk_full; the partial file is removed and the earlier checkpoint is whole', { skip, timeout: 180_000 }, async (t) => {
  const disk = SmallFilesystem.mount(t, 256 * MiB);
  const ctx = await withTestApp(t, { env: { DATA_DIR: disk.dir, DATA_DIR_MIN_FREE_BYTES: '0', TRAIN_DEVICE: 'cpu' } });
  const datasetId = await createDataset(ctx);
  assert.equal((await upload(ctx, datasetId, [{ name: 'a.png', seed: 1 }, { name: 'b.png', seed: 2 }])).statusCode, 201);
  const created = await ctx.app.inject({
    method: 'POST', url: '/v1/training-runs', headers: ctx.auth,
    payload: { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { resolution: 64, max_steps: 2000, checkpoint_every: 5, keep_checkpoints: 0, rank: 4, alpha: 4, seed: 7 } },
  });
  assert.equal(created.statusCode, 202, created.body);
  const runId = created.json().id as string;
  const checkpoints = path.join(disk.dir, 'runs', runId, 'checkpoints');
  const written = () => filesUnder(checkpoints).filter((name) => /^step-\d+\.safetensors$/.test(name)).sort();
  for (let i = 0; written().length === 0; i++) {
    assert.ok(i < 1200, 'a first checkpoint within 120 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  disk.fill(0);
  const kept = written();

  let run: { status: string; error: { code: string; message: string } | null } | undefined;
  for (let i = 0; run === undefined || !['succeeded', 'failed', 'canceled'].includes(run.status); i++) {
    assert.ok(i < 1200, 'the run ends within 120 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
    run = (await ctx.app.inject({ method: 'GET', url: `/v1/training-runs/${runId}`, headers: ctx.auth })).json();
  }
  assert.equal(run!.status, 'failed');
  assert.equal(run!.error?.code, 'disk_full', run!.error?.message);
  assert.match(run!.error!.message, /No space left on device/);
  const left = filesUnder(checkpoints);
  assert.deepEqual(left.filter((name) => name.includes('.tmp-')), [], 'no partial checkpoint left');
  for (const name of kept) {
    const checkpoint = readSafetensors(path.join(checkpoints, name));
    assert.ok(checkpoint.tensors.size > 0, `${name} is whole`);
  }
});
