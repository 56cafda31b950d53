// Bad arguments get clear errors: first from the TypeScript checks, and from
// C++ when the raw addon is called directly (nothing may crash the process).
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { EngineArgumentError, inspectSafetensors, loadModel, verify, type Model } from '../../src/engine/index.js';
import { loadNativeAddon } from '../../src/engine/native.js';
import type { NativeModel } from '../../src/engine/types.js';
import { goldenDir, kohyaLora, tinyModelDir } from './fixtures.js';

const scratch = mkdtempSync(path.join(tmpdir(), 'sdxl-arguments-'));

function rejectsWith(code: string, pattern: RegExp) {
  return (error: unknown) => {
    const { code: actual, message } = error as Error & { code?: string };
    assert.equal(actual, code, message);
    assert.match(message, pattern);
    return true;
  };
}

describe('TypeScript checks', () => {
  let model: Model;
  before(async () => {
    model = await loadModel({ modelPath: tinyModelDir });
  });
  after(() => model.dispose());

  test('load options', async () => {
    await assert.rejects(loadModel({ modelPath: path.join(scratch, 'nope') }), /options.modelPath does not exist: .*nope/);
    await assert.rejects(loadModel({ modelPath: tinyModelDir, device: 'tpu' }), {
      name: 'EngineArgumentError',
      message: 'Expected "cpu", "cuda" or "cuda:N" for options.device but received "tpu"',
    });
    await assert.rejects(loadModel({ modelPath: tinyModelDir, dtype: 'int8' }), {
      message: 'Expected "float32", "bfloat16" or "float16" for options.dtype but received "int8"',
    });
    await assert.rejects(loadModel({ modelPath: tinyModelDir, configDir: kohyaLora }), /Expected a directory for options.configDir/);
    await assert.rejects(loadModel(null as never), /Expected an object for options but received null/);
  });

  test('generate options', async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ prompt: 'x', width: 100 }, /Expected a multiple of 8 for options.width but received 100/],
      [{ prompt: 'x', height: -8 }, /Expected a positive integer up to 4096 for options.height but received -8/],
      [{ prompt: 'x', width: 64.5 }, /options.width but received 64.5/],
      [{ prompt: 'x', steps: 0 }, /Expected a positive integer up to 1000 for options.steps but received 0/],
      [{ prompt: 'x', guidanceScale: Number.NaN }, /Expected a finite number for options.guidanceScale but received NaN/],
      [{ prompt: 'x', seed: -1 }, /options.seed but received -1/],
      [{ prompt: 'x', seed: 1n << 64n }, /Expected an unsigned 64-bit integer for options.seed/],
      [{ prompt: 42 }, /Expected a string for options.prompt but received 42/],
      [{ prompt: 'x', loras: [{ path: path.join(scratch, 'missing.safetensors') }] }, /options.loras\[0\].path does not exist/],
      [{ prompt: 'x', loras: [{ path: kohyaLora, scale: Infinity }] }, /options.loras\[0\].scale but received Infinity/],
      [{ prompt: 'x', sampler: 'ddim' }, /Expected one of euler, euler_a, dpmpp_2m_karras for options.sampler but received "ddim"/],
      [{ prompt: 'x', numImages: 5 }, /options.numImages but received 5/],
      [{ prompt: 'x', cropTop: -1 }, /options.cropTop but received -1/],
    ];
    for (const [options, message] of cases) {
      const job = model.generate(options as never);
      await assert.rejects(job.promise, (error: unknown) => {
        assert.ok(error instanceof EngineArgumentError, String(error));
        assert.equal(error.code, 'ERR_SDXL_INVALID_ARGUMENT');
        assert.match(error.message, message);
        return true;
      });
      job.cancel(); // harmless on a job that never started
    }
    await assert.rejects(model.tokenize(7 as never), /Expected a string for prompt but received 7/);
  });

  test('verify options', async () => {
    await assert.rejects(verify({ modelPath: tinyModelDir, goldenDir: path.join(scratch, 'none') }).promise,
      /options.goldenDir does not exist/);
    await assert.rejects(
      verify({ modelPath: tinyModelDir, goldenDir, outPath: path.join(scratch, 'no', 'dir', 'out.safetensors') }).promise,
      /options.outPath: the folder .* does not exist/,
    );
    await assert.rejects(verify({ modelPath: tinyModelDir, goldenDir, device: 'cuda:x' }).promise, /options.device/);
  });
});

describe('C++ checks, reached through the raw addon', () => {
  const addon = loadNativeAddon();
  let model: NativeModel;
  before(async () => {
    model = await addon.loadModel({ modelPath: tinyModelDir });
  });
  after(() => model.dispose());

  test('invalid device and dtype are ERR_SDXL_INVALID_ARGUMENT naming the value', async () => {
    await assert.rejects(addon.loadModel({ modelPath: tinyModelDir, device: 'tpu' }),
      rejectsWith('ERR_SDXL_INVALID_ARGUMENT', /invalid device 'tpu'/));
    await assert.rejects(addon.loadModel({ modelPath: tinyModelDir, dtype: 'int8' }),
      rejectsWith('ERR_SDXL_INVALID_ARGUMENT', /invalid dtype 'int8'/));
    if (!addon.buildInfo().cudaAvailable) {
      await assert.rejects(addon.loadModel({ modelPath: tinyModelDir, device: 'cuda' }),
        rejectsWith('ERR_SDXL_INVALID_ARGUMENT', /CUDA is not available/));
    }
  });

  test('a nonexistent model path is an error naming it', async () => {
    const missing = path.join(scratch, 'no-model-here');
    await assert.rejects(addon.loadModel({ modelPath: missing }), (error: unknown) => {
      assert.ok((error as Error).message.includes(missing), (error as Error).message);
      assert.match((error as { code: string }).code, /^ERR_SDXL_/);
      return true;
    });
  });

  test('a malformed safetensors file is an error naming the file and the problem', async () => {
    const broken = path.join(scratch, 'broken.safetensors');
    const header = Buffer.from('{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}');
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(header.length));
    writeFileSync(broken, Buffer.concat([length, header, Buffer.alloc(8)])); // 8 of 16 data bytes
    await assert.rejects(addon.inspectSafetensors(broken),
      rejectsWith('ERR_SDXL_ENGINE', /broken.safetensors: tensor 'w': data_offsets \[0, 16\] run past the end/));
    await assert.rejects(inspectSafetensors(broken), /run past the end/);
    // And as a LoRA given to generate.
    const job = model.generate({ prompt: 'x', width: 64, height: 64, steps: 1, loras: [{ path: broken }] });
    await assert.rejects(job.promise, /broken.safetensors/);
  });

  test('values the engine refuses are ERR_SDXL_INVALID_ARGUMENT', async () => {
    await assert.rejects(model.generate({ prompt: 'x', width: 100, height: 64, steps: 1 }).promise,
      rejectsWith('ERR_SDXL_INVALID_ARGUMENT', /width but received 100/));
    await assert.rejects(model.generate({ prompt: 'x', width: 64, height: 64, steps: 0 }).promise,
      rejectsWith('ERR_SDXL_INVALID_ARGUMENT', /steps/));
  });

  test('wrong JavaScript types are TypeErrors naming the field, thrown synchronously', () => {
    assert.throws(() => model.generate({ prompt: 'x', width: 'wide' } as never),
      { name: 'TypeError', code: 'ERR_SDXL_INVALID_ARGUMENT', message: 'Expected integer for options.width but received string "wide"' });
    assert.throws(() => model.generate({ prompt: 'x', seed: 2 ** 64 } as never), /options.seed/);
    assert.throws(() => model.generate(undefined as never), /Expected object for options but received undefined/);
    assert.throws(() => model.generate({ prompt: 'x' }, 5 as never), /onProgress/);
    assert.throws(() => addon.loadModel({} as never), /Expected string for options.modelPath but received undefined/);
    assert.throws(() => model.tokenize(undefined as never), /Expected string for prompt/);
    assert.throws(() => addon.inspectSafetensors(3 as never), /Expected string for path but received number/);
    assert.throws(() => new (addon.Model as unknown as new () => unknown)(), /use loadModel/);
  });

  test('a disposed model answers ERR_SDXL_DISPOSED', async () => {
    const other = await addon.loadModel({ modelPath: tinyModelDir });
    other.dispose();
    assert.equal(other.disposed, true);
    assert.throws(() => other.describe(), { code: 'ERR_SDXL_DISPOSED' });
    assert.throws(() => other.tokenize('x'), { code: 'ERR_SDXL_DISPOSED' });
  });

  test('inspectSafetensors reads a header with metadata', async () => {
    const header = await addon.inspectSafetensors(kohyaLora);
    assert.equal(header.metadata.ss_network_alpha, '2.0');
    const names = Object.keys(header.tensors);
    assert.equal(names.length, 224 * 3);
    const alpha = header.tensors['lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_k.alpha'];
    assert.deepEqual(alpha, { dtype: 'F32', shape: [], dataOffsets: [0, 4] });
  });
});
