// Ending JavaScript while a native job computes must not crash the process:
// process.exit() mid-job, a worker that exits or is terminated mid-job.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';

import { addonCandidates } from '../../src/engine/native.js';
import { tinyModelDir } from './fixtures.js';

const addonPath = addonCandidates().find((candidate) => existsSync(candidate)) ?? addonCandidates()[0]!;

// Loads the tiny model, starts a long generate, and runs `onProgress` (JS source) at its first report.
function script(onProgress: string): string {
  return `
const addon = require(${JSON.stringify(addonPath)});
addon.loadModel({ modelPath: ${JSON.stringify(tinyModelDir)} }).then((model) => {
  let first = true;
  model.generate({ prompt: 'x', width: 128, height: 128, steps: 500 }, () => {
    if (first) { first = false; ${onProgress} }
  });
});`;
}

test('process.exit() during a generate exits cleanly with its code', () => {
  const child = spawnSync(process.execPath, ['-e', script("console.log('exiting'); process.exit(7);")], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(child.signal, null, `killed by ${child.signal}: ${child.stderr}`);
  assert.equal(child.status, 7, child.stderr);
  assert.match(child.stdout, /exiting/);
});

test('a worker that calls process.exit() mid-job ends with its code; the process lives on', async () => {
  const worker = new Worker(script('process.exit(3);'), { eval: true });
  const code = await new Promise<number>((resolve, reject) => {
    worker.once('exit', resolve);
    worker.once('error', reject);
  });
  assert.equal(code, 3);
});

test('terminating a worker mid-job is safe', async () => {
  const worker = new Worker(script("require('node:worker_threads').parentPort.postMessage('running');"), { eval: true });
  await new Promise<void>((resolve, reject) => {
    worker.once('message', () => resolve());
    worker.once('error', reject);
  });
  const started = performance.now();
  await worker.terminate();
  assert.ok(performance.now() - started < 5000, 'terminate waited too long for the job');
});
