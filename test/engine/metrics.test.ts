// The quality metrics' TypeScript surface: arguments refused with the field named before any
// native work, a training report's scores read back, and (on the engine) the fixture networks'
// availability and an FID equal to the reference implementation's on the fixture images.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, test } from 'node:test';
import sharp from 'sharp';
import { evaluate, EngineArgumentError, metricNetworks, reportedScores, type EvaluateImage } from '../../src/engine/index.js';
import { metricFixturesDir, metricsModelsDir } from '../support/metrics-models.js';

async function fixtureImage(name: string): Promise<EvaluateImage> {
  const { data, info } = await sharp(path.join(metricFixturesDir, 'images', `${name}.png`)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { name, width: info.width, height: info.height, rgb: data };
}

const rejects = (options: unknown, message: RegExp) =>
  assert.rejects(evaluate(options as never).promise, (error: unknown) => {
    assert.ok(error instanceof EngineArgumentError, String(error));
    assert.match(error.message, message);
    return true;
  });

describe('evaluate arguments', () => {
  const modelsDir = metricsModelsDir();
  const image = { name: 'a', width: 2, height: 2, rgb: Buffer.alloc(12) };
  test('bad options are refused, naming the field', async () => {
    await rejects({ modelsDir: '/nonexistent/metrics', metrics: ['fid'], images: [image] }, /options\.modelsDir does not exist/);
    await rejects({ modelsDir, metrics: ['fid', 'dino'], images: [image] }, /for options\.metrics\[1\] but received "dino"/);
    await rejects({ modelsDir, metrics: ['is', 'is'], images: [image] }, /options\.metrics\[1\] repeats "is"/);
    await rejects({ modelsDir, metrics: ['is'], images: [{ ...image, rgb: Buffer.alloc(11) }] }, /12 bytes for options\.images\[0\]\.rgb/);
    await rejects({ modelsDir, metrics: ['is'], images: [image], references: [{ ...image, width: 0 }] }, /options\.references\[0\]\.width but received 0/);
    await rejects({ modelsDir, metrics: ['is'], images: [image], device: 'tpu' }, /options\.device/);
  });
});

describe('reportedScores', () => {
  test('reads metric_<key>, unavailable_<metric> with its reason, and final_set', () => {
    const scores = reportedScores({
      phase: 'validating', step: 4, total: 4, files: [],
      message: 'hps unavailable: no hps/open_clip_config.json under the metrics models folder; fid unavailable: needs 2 or more reference images',
      metrics: { validation_loss: 0.1, metric_clip_t: 12.5, metric_kid_std: 0.01, unavailable_hps: 1, unavailable_fid: 1, final_set: 1 },
    });
    assert.deepEqual(scores, {
      values: { clip_t: 12.5, kid_std: 0.01 },
      unavailable: { hps: 'no hps/open_clip_config.json under the metrics models folder', fid: 'needs 2 or more reference images' },
      final: true,
    });
    assert.deepEqual(reportedScores({ phase: 'validating', step: 2, total: 4, files: [], message: '', metrics: { validation_loss: 0.1 } }),
      { values: {}, unavailable: {}, final: false });
  });
});

describe('on the engine', () => {
  test('metricNetworks: the fixture networks are found; a missing one is named', () => {
    const all = metricNetworks(metricsModelsDir());
    assert.deepEqual(all.map((entry) => [entry.metric, entry.available]).sort(), [
      ['clip_i', true], ['clip_t', true], ['fid', true], ['hps', true], ['is', true], ['kid', true], ['lpips', true],
    ]);
    const some = metricNetworks(metricsModelsDir(['clip']));
    const fid = some.find((entry) => entry.metric === 'fid')!;
    assert.deepEqual([fid.network, fid.available], ['inception', false]);
    assert.match(fid.reason ?? '', /inception\/model\.safetensors/);
  });

  test("evaluate: FID of the fixture sets equals torchmetrics'; too few images is unavailable, not an error", async () => {
    const a = await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map((i) => fixtureImage(`A_${i}`)));
    const b = await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map((i) => fixtureImage(`B_${i}`)));
    const modelsDir = metricsModelsDir();
    // torchmetrics: A real, B generated (../shared/fixtures/metrics/README.md).
    const result = await evaluate({ modelsDir, metrics: ['fid', 'is'], images: b, references: a, seed: 0 }).promise;
    assert.ok(Math.abs(result.values.fid! - 47.512961817634825) < 1e-3 * 47.5, `fid ${result.values.fid}`);
    assert.equal(result.values.images, 8);
    assert.equal(result.values.reference_images, 8);
    assert.deepEqual(result.unavailable, {});
    const few = await evaluate({ modelsDir, metrics: ['fid', 'lpips', 'clip_t'], images: [b[0]!], references: a }).promise;
    assert.deepEqual(Object.keys(few.unavailable).sort(), ['clip_t', 'fid', 'lpips'], JSON.stringify(few));
  });
});
