// LoRAs are applied per call as an overlay of that call's thread: generations with
// different LoRAs (or none) run at the same time on one model and each gives the bytes
// it gives alone. Parsed LoRAs are cached per model (by sha256 when given).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { loadModel, type GenerateOptions, type LoraSpec, type Model } from '../../src/engine/index.js';
import { readSafetensors, writeSafetensors } from '../support/safetensors.js';
import { goldenDir, kohyaLora, tinyModelDir } from './fixtures.js';

const scratch = mkdtempSync(path.join(tmpdir(), 'sdxl-lora-concurrency-'));
const peftLora = path.join(goldenDir, 'lora', 'tiny_lora_peft.safetensors');

// Enough steps that calls started together overlap for a good while.
const BASE: GenerateOptions = { prompt: 'a photo of an astronaut riding a horse', width: 64, height: 64, steps: 6, seed: 3 };

/**
 * Another adapter on the same modules as the fixture's: its A matrices with every other
 * value negated, its B matrices tripled (float32 files only, as the fixture is).
 */
function otherAdapter(): string {
  const file = readSafetensors(peftLora);
  for (const [name, tensor] of file.tensors) {
    assert.equal(tensor.dtype, 'F32', name);
    const values = new Float32Array(tensor.data.buffer.slice(tensor.data.byteOffset, tensor.data.byteOffset + tensor.data.length));
    const isA = name.endsWith('lora_A.weight');
    for (let i = 0; i < values.length; i++) values[i]! *= isA ? (i % 2 === 0 ? -1 : 1) : 3;
    tensor.data = Buffer.from(values.buffer);
  }
  const out = path.join(scratch, 'other_adapter.safetensors');
  writeSafetensors(out, file.tensors, file.metadata);
  return out;
}

let model: Model;
let loraY: string;
before(async () => {
  model = await loadModel({ modelPath: tinyModelDir });
  loraY = otherAdapter();
});
after(() => {
  model.dispose();
  rmSync(scratch, { recursive: true, force: true });
});

async function generate(loras: LoraSpec[]): Promise<Buffer> {
  const [image] = await model.generate({ ...BASE, loras }).promise;
  return image!.rgb;
}

test('concurrent generations with different LoRAs equal the same generations run alone', async () => {
  const calls: Record<string, LoraSpec[]> = {
    A: [{ path: kohyaLora, scale: 1 }],
    B: [{ path: loraY, scale: 0.7 }],
    C: [],
    AB: [{ path: kohyaLora, scale: 1 }, { path: loraY, scale: 0.7 }],
  };
  const alone: Record<string, Buffer> = {};
  for (const [name, loras] of Object.entries(calls)) alone[name] = await generate(loras);

  // Each LoRA changes the image, and two at once differ from each alone.
  assert.ok(!alone.A!.equals(alone.C!), 'LoRA X changed nothing');
  assert.ok(!alone.B!.equals(alone.C!), 'LoRA Y changed nothing');
  assert.ok(!alone.A!.equals(alone.B!), 'LoRA X and LoRA Y gave the same image');
  assert.ok(!alone.AB!.equals(alone.A!) && !alone.AB!.equals(alone.B!), 'two LoRAs at once equal one of them');

  // All at once (twice each), recording when each call starts denoising and when it ends.
  const events: string[] = [];
  const names = [...Object.keys(calls), ...Object.keys(calls)];
  const results = await Promise.all(
    names.map(async (name, index) => {
      let started = false;
      const job = model.generate({ ...BASE, loras: calls[name]! }, (report) => {
        if (report.phase === 'denoising' && !started) {
          started = true;
          events.push(`start ${index}`);
        }
      });
      const [image] = await job.promise;
      events.push(`end ${index}`);
      return image!.rgb;
    }),
  );
  for (const [index, name] of names.entries()) assert.ok(results[index]!.equals(alone[name]!), `${name} (#${index}) differs when run with the others`);
  // No call waits for another to finish before it starts denoising (no exclusive lock).
  const firstEnd = events.findIndex((event) => event.startsWith('end'));
  assert.equal(events.slice(0, firstEnd).length, names.length, `a call started only after another ended: ${events.join(', ')}`);
});

test('the LoRA cache hits on repeats, keys by sha256 when given, and counts its bytes', async () => {
  const before = model.loraCacheStats();
  await generate([{ path: kohyaLora }]);
  const repeat = model.loraCacheStats();
  assert.equal(repeat.hits, before.hits + 1);
  assert.equal(repeat.misses, before.misses);

  // A caller-given hash is its own key: one miss, then hits.
  const sha256 = 'f'.repeat(64);
  await generate([{ path: kohyaLora, sha256 }]);
  await generate([{ path: kohyaLora, sha256 }]);
  const hashed = model.loraCacheStats();
  assert.equal(hashed.misses, repeat.misses + 1);
  assert.equal(hashed.hits, repeat.hits + 1);
  assert.equal(hashed.entries, repeat.entries + 1);
  assert.ok(hashed.bytes > repeat.bytes, `${hashed.bytes} bytes after one more entry`);
});

test('loraCacheBytes bounds the cache: least recently used LoRAs leave', async () => {
  const small = await loadModel({ modelPath: tinyModelDir, loraCacheBytes: 1 });
  try {
    const run = (loras: LoraSpec[]) => small.generate({ ...BASE, steps: 1, loras }).promise;
    await run([{ path: kohyaLora }]);
    await run([{ path: loraY }]);
    const stats = small.loraCacheStats();
    assert.equal(stats.entries, 1); // only the newest stays, over the budget as it is
    assert.equal(stats.misses, 2);
    await run([{ path: kohyaLora }]);
    assert.equal(small.loraCacheStats().misses, 3);
  } finally {
    small.dispose();
  }
  await assert.rejects(loadModel({ modelPath: tinyModelDir, loraCacheBytes: -1 }), /options.loraCacheBytes but received -1/);
});
