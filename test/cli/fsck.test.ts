// npm run fsck against a real Postgres and DATA_DIR: a clean service checks clean (exit 0);
// damage of every kind it knows (a corrupt blob, a dataset image whose blob is gone, a run
// artifact whose file is gone, an orphan blob past its grace period, a run folder of no run)
// is reported (exit 4) and nothing is changed; --repair fixes each in one pass (exit 1);
// then it is clean again, and what was not damaged still reads back.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { projectRoot } from '../../src/paths.js';
import { createTrainingRunArtifactsRepository } from '../../src/repositories/training-run-artifacts.js';
import { createTrainingRunsRepository } from '../../src/repositories/training-runs.js';
import { BLOBS_SUBDIR } from '../../src/routes/v1/images/index.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { RUNS_SUBDIR } from '../../src/storage/run-file-store.js';
import { png } from '../support/images.js';
import { filesBody } from '../support/multipart.js';
import { withTestApp } from '../helper.js';

const run = promisify(execFile);

async function fsck(env: Record<string, string>, ...args: string[]): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await run('npm', ['run', '--silent', 'fsck', '--', ...args], { cwd: projectRoot, env: { ...process.env, ...env } });
    return { code: 0, stdout };
  } catch (error) {
    const failed = error as { code: number; stdout: string; stderr: string };
    if (typeof failed.code !== 'number') throw error;
    return { code: failed.code, stdout: failed.stdout + failed.stderr };
  }
}

test('fsck reports each kind of damage, --repair fixes it, and then it checks clean', async (t) => {
  const ctx = await withTestApp(t, { env: { MAINTENANCE_INTERVAL_MS: '0', TRAINING_SLOTS: '0', GENERATION_SLOTS: '0' } });
  const dataDir = ctx.config.dataDir;
  const env = { DATABASE_URL: ctx.config.databaseUrl!, DATA_DIR: dataDir, LOG_LEVEL: 'silent' };
  const blobs = new FsBlobStore(path.join(dataDir, BLOBS_SUBDIR));
  const dataset = await ctx.app.inject({ method: 'POST', url: '/v1/datasets', headers: ctx.auth, payload: { name: 'fsck', class_word: 'dog' } });
  const datasetId = dataset.json().id as string;
  const body = filesBody(await Promise.all([1, 2, 3].map(async (seed) => ({ name: `photo-${seed}.png`, contentType: 'image/png', data: await png({ width: 256, height: 256, seed }) }))));
  const uploaded = await ctx.app.inject({ method: 'POST', url: `/v1/datasets/${datasetId}/images`, headers: { ...ctx.auth, ...body.headers }, payload: body.payload });
  assert.equal(uploaded.statusCode, 201, uploaded.body);
  const [intact, corrupt, lost] = uploaded.json().data as Array<{ id: string; sha256: string }>;

  const clean = await fsck(env);
  assert.equal(clean.code, 0, clean.stdout);
  assert.match(clean.stdout, /checked 3 blobs, 3 rows naming blobs, 0 run artifacts, 0 run folders: clean/);

  // The damage.
  fs.writeFileSync(blobs.pathOf(corrupt!.sha256), 'flipped bits');
  fs.rmSync(blobs.pathOf(lost!.sha256));
  const orphan = await blobs.put(Buffer.from('left by an interrupted upload'));
  const longAgo = new Date(Date.now() - 2 * 3_600_000);
  fs.utimesSync(blobs.pathOf(orphan.sha256), longAgo, longAgo);
  const trainingRun = await ctx.db.transaction((tx) => createTrainingRunsRepository(tx).insert({
    tenantId: ctx.tenantId, datasetId, modelId: 'sdxl-tiny-demo', name: 'fsck', params: {}, metadata: {}, triggerToken: 'ohwx', classWord: 'dog', images: [],
  }));
  await createTrainingRunArtifactsRepository(ctx.db).record({ run_id: trainingRun.id, name: 'lora.safetensors', kind: 'lora', byte_size: 10, sha256: 'a'.repeat(64), step: 10 });
  const strayFolder = path.join(dataDir, RUNS_SUBDIR, 'tr_01JD3Q5V8Z6ZK2W7M4N1T0X9PA');
  fs.mkdirSync(strayFolder, { recursive: true });
  fs.writeFileSync(path.join(strayFolder, 'lora.safetensors'), 'x');

  const found = await fsck(env);
  assert.equal(found.code, 4, found.stdout);
  const lines = found.stdout.split('\n').filter((line) => line.startsWith('found '));
  assert.deepEqual(lines.map((line) => line.split(':')[0]).sort(), [
    'found corrupt-blob', 'found missing-artifact', 'found missing-blob', 'found orphan-blob', 'found orphan-run-folder',
  ]);
  assert.ok(lines.some((line) => line.includes(`blob ${corrupt!.sha256}`) && line.startsWith('found corrupt-blob')), found.stdout);
  assert.ok(lines.some((line) => line.includes(`1 images row(s) naming blob ${lost!.sha256}`)), found.stdout);
  assert.ok(lines.some((line) => line.includes(`artifact lora.safetensors of training run ${trainingRun.id}`)), found.stdout);
  assert.ok(fs.existsSync(strayFolder) && fs.existsSync(blobs.pathOf(orphan.sha256)), 'without --repair nothing is changed');

  // Repaired in order: the corrupt blob moved aside first, so its image's row names bytes that are gone and goes too.
  const repaired = await fsck(env, '--repair');
  assert.equal(repaired.code, 1, repaired.stdout);
  assert.match(repaired.stdout, /6 problem\(s\), 6 repaired, 0 left/);
  assert.match(repaired.stdout, new RegExp(`repaired missing-blob: 1 images row\\(s\\) naming blob ${corrupt!.sha256}`));
  assert.ok(fs.existsSync(path.join(dataDir, 'lost+found', corrupt!.sha256)), 'the corrupt blob is kept aside for a look');
  assert.equal(fs.existsSync(strayFolder), false);
  assert.equal(await blobs.exists(orphan.sha256), false);
  const after = await fsck(env);
  assert.equal(after.code, 0, after.stdout);

  const listed = await ctx.app.inject({ method: 'GET', url: `/v1/datasets/${datasetId}/images`, headers: ctx.auth });
  assert.deepEqual(listed.json().data.map((image: { id: string }) => image.id), [intact!.id], 'the intact image is all that is left');
  const content = await ctx.app.inject({ method: 'GET', url: `/v1/images/${intact!.id}/content`, headers: ctx.auth });
  assert.equal(content.statusCode, 200);
});
