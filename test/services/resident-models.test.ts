// Resident base models for generations: one load per model however many generations ask at
// once, shared while held, and least-recently-used eviction of models nobody holds once
// the loaded bytes pass the budget (a held model is never evicted).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { loadModel, type LoadOptions } from '../../src/engine/index.js';
import { ModelsService } from '../../src/services/models.js';
import { ResidentModels } from '../../src/services/resident-models.js';
import { tinyModelDir } from '../engine/fixtures.js';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-resident-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));
const modelsDir = path.join(scratch, 'models');
for (const id of ['tiny-a', 'tiny-b']) fs.cpSync(tinyModelDir, path.join(modelsDir, id), { recursive: true });
const models = new ModelsService(modelsDir, path.join(scratch, 'demo'));

function residentModels(maxBytes: number) {
  const loads: string[] = [];
  const resident = new ResidentModels({
    models, device: 'cpu', dtype: 'float32', maxBytes, loraCacheBytes: 1 << 20,
    load: (options: LoadOptions) => {
      loads.push(path.basename(options.modelPath));
      return loadModel(options);
    },
  });
  return { resident, loads };
}

test('concurrent acquires of one model load it once and share the copy', async () => {
  const { resident, loads } = residentModels(1 << 30);
  const held = await Promise.all([resident.acquire(null, 'tiny-a'), resident.acquire(null, 'tiny-a'), resident.acquire(null, 'tiny-a')]);
  assert.deepEqual(loads, ['tiny-a']);
  assert.equal(held[0]!.model, held[1]!.model);
  assert.equal(held[1]!.model, held[2]!.model);
  for (const h of held) h.release();
  const again = await resident.acquire(null, 'tiny-a');
  assert.equal(again.loadSeconds, 0, 'resident: no load');
  again.release();
  const stats = resident.stats();
  assert.equal(stats.resident, 1);
  assert.equal(stats.misses, 1);
  assert.equal(stats.hits, 3);
  // The tiny model's float32 weights: its parameter count times 4 bytes.
  const info = again.model.describe();
  assert.equal(stats.bytes, 4 * (info.unetParameters + info.vaeParameters + info.textEncoderParameters + info.textEncoder2Parameters));
  resident.close();
});

test('over the budget the least recently used model nobody holds is evicted; a held one stays', async () => {
  const probe = residentModels(1 << 30);
  const one = await probe.resident.acquire(null, 'tiny-a');
  one.release();
  const bytes = probe.resident.stats().bytes;
  probe.resident.close();

  const { resident, loads } = residentModels(bytes); // room for one model
  const a = await resident.acquire(null, 'tiny-a');
  const b = await resident.acquire(null, 'tiny-b'); // both held: over budget, nothing evictable
  assert.equal(resident.stats().resident, 2);
  a.release(); // a is now the least recently used, and free: evicted
  assert.equal(resident.stats().resident, 1);
  assert.equal(a.model.disposed, true);
  assert.equal(b.model.disposed, false);
  b.release();
  const b2 = await resident.acquire(null, 'tiny-b');
  assert.equal(b2.model, b.model, 'b stayed');
  b2.release();
  await (await resident.acquire(null, 'tiny-a')).release();
  assert.deepEqual(loads, ['tiny-a', 'tiny-b', 'tiny-a']);
  assert.equal(resident.stats().evictions, 2);
  resident.close();
});

test('a model that fails to load is tried again by the next acquire', async () => {
  const { resident } = residentModels(1 << 30);
  await assert.rejects(resident.acquire(null, 'no-such-model'), /no-such-model/);
  await assert.rejects(resident.acquire(null, 'no-such-model'), /no-such-model/);
  assert.equal(resident.stats().resident, 0);
});
