// Long jobs on their own native thread: results, progress, cancellation, and
// a JavaScript event loop that keeps running while they work.
import assert from 'node:assert/strict';
import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { inspectSafetensors, isCancelled, loadModel, verify, type Model, type Progress } from '../../src/engine/index.js';
import { goldenDir, tinyModelDir } from './fixtures.js';

const TICK_MS = 10;
const CANCEL_DEADLINE_MS = 2000; // a cancelled job stops at its next step, well within this

let model: Model;
before(async () => {
  model = await loadModel({ modelPath: tinyModelDir });
});
after(() => model.dispose());

// Counts setInterval ticks and the longest gap between two while `work` runs.
async function measureEventLoop<T>(work: () => Promise<T>) {
  let ticks = 0;
  let longestGap = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    longestGap = Math.max(longestGap, now - last);
    last = now;
    ticks += 1;
  }, TICK_MS);
  const started = performance.now();
  try {
    const result = await work();
    return { result, ticks, longestGap, elapsed: performance.now() - started };
  } finally {
    clearInterval(timer);
  }
}

test('generate returns an RGB image, the same for the same seed, with progress', async () => {
  const progress: Progress[] = [];
  const options = { prompt: 'a photo of an astronaut riding a horse', width: 64, height: 96, steps: 3, seed: 7 };
  const job = model.generate(options, (report) => progress.push(report));
  const images = await job.promise;
  assert.equal(images.length, 1);
  const image = images[0]!;
  assert.equal(image.width, 64);
  assert.equal(image.height, 96);
  assert.equal(image.rgb.length, 64 * 96 * 3);
  assert.ok(progress.length > 0, 'no progress reported');
  assert.ok(progress.some((report) => report.phase.length > 0 && report.total >= 0));
  const [again] = await model.generate(options).promise;
  assert.ok(again!.rgb.equals(image.rgb), 'same seed gave a different image');
  const [other] = await model.generate({ ...options, seed: 8 }).promise;
  assert.ok(!other!.rgb.equals(image.rgb), 'another seed gave the same image');
});

test('cancel after the first progress rejects quickly with ERR_SDXL_CANCELLED', async () => {
  const job = model.generate({ prompt: 'a lighthouse', width: 128, height: 128, steps: 500, seed: 1 });
  let cancelledAt = 0;
  const firstProgress = new Promise<void>((resolve) => {
    job.onProgress(() => {
      if (cancelledAt === 0) {
        cancelledAt = performance.now();
        job.cancel();
        resolve();
      }
    });
  });
  await assert.rejects(job.promise, (error: unknown) => {
    assert.ok(isCancelled(error), String(error));
    assert.equal((error as Error).message, 'cancelled');
    return true;
  });
  await firstProgress;
  const latency = performance.now() - cancelledAt;
  assert.ok(latency < CANCEL_DEADLINE_MS, `cancel took ${latency.toFixed(0)} ms`);
});

test('cancel before the job starts its work also rejects with ERR_SDXL_CANCELLED', async () => {
  const job = model.generate({ prompt: 'x', width: 64, height: 64, steps: 50 });
  job.cancel();
  await assert.rejects(job.promise, { code: 'ERR_SDXL_CANCELLED' });
});

test('an error thrown by a progress listener cancels the job and rejects with it', async () => {
  const job = model.generate({ prompt: 'x', width: 64, height: 64, steps: 200 }, () => {
    throw new Error('listener broke');
  });
  await assert.rejects(job.promise, /listener broke/);
});

test('the event loop keeps ticking while generate runs', async () => {
  const { result, ticks, longestGap, elapsed } = await measureEventLoop(
    () => model.generate({ prompt: 'a horse', width: 128, height: 128, steps: 12, seed: 3 }).promise,
  );
  assert.equal(result[0]!.rgb.length, 128 * 128 * 3);
  const expectedTicks = elapsed / TICK_MS;
  assert.ok(elapsed > 5 * TICK_MS, `generate finished too fast to measure (${elapsed.toFixed(0)} ms)`);
  assert.ok(ticks >= expectedTicks * 0.3, `${ticks} ticks in ${elapsed.toFixed(0)} ms`);
  assert.ok(longestGap < 500, `the event loop stalled for ${longestGap.toFixed(0)} ms`);
});

test('verify reports every golden row and keeps the event loop ticking', async () => {
  const out = path.join(mkdtempSync(path.join(tmpdir(), 'sdxl-verify-')), 'computed.safetensors');
  const phases = new Set<string>();
  const { result, ticks, longestGap, elapsed } = await measureEventLoop(
    () => verify({ modelPath: tinyModelDir, goldenDir, outPath: out }, (report) => phases.add(report.phase)).promise,
  );
  assert.ok(result.rows.length > 0);
  for (const row of result.rows) {
    assert.equal(typeof row.name, 'string');
    assert.ok(Number.isFinite(row.maxAbsDiff) && row.tolerance >= 0, JSON.stringify(row));
    assert.equal(row.pass, row.maxAbsDiff <= row.tolerance, JSON.stringify(row));
  }
  assert.equal(result.pass, result.rows.every((row) => row.pass));
  assert.ok(phases.size > 0, 'no progress reported');
  assert.ok(ticks >= (elapsed / TICK_MS) * 0.3, `${ticks} ticks in ${elapsed.toFixed(0)} ms`);
  assert.ok(longestGap < 500, `the event loop stalled for ${longestGap.toFixed(0)} ms`);
  assert.ok(existsSync(out), 'outPath not written');
  const written = await inspectSafetensors(out);
  assert.ok(Object.keys(written.tensors).length > 0);
});

test('verify can be cancelled', async () => {
  const job = verify({ modelPath: tinyModelDir, goldenDir }, () => job.cancel());
  await assert.rejects(job.promise, { code: 'ERR_SDXL_CANCELLED' });
});
