// src/console/quality-metrics.ts: how the console reads and shows the quality metrics of
// runs (issue 25). Pure functions, no browser: the fields are read defensively (a service
// without them shows nothing), KID and IS carry their deviation, and a comparison shows
// only the metrics some run has.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  formatMetric,
  latestSet,
  metricColumns,
  metricInfosOf,
  metricsOf,
  qualitySetOf,
  requestedQuality,
  runQuality,
  sampleSizes,
  setLabel,
  type QualitySet,
} from '../../src/console/quality-metrics.js';

const finalSet: QualitySet = {
  step: 20,
  final: true,
  values: {
    clip_t: 27.123456,
    fid: 212.5,
    kid: 0.0123456,
    kid_std: 0.0045678,
    kid_subsets: 100,
    kid_subset_size: 16,
    is: 1.5,
    is_std: 0.25,
    is_splits: 8,
    images: 16,
    reference_images: 3,
  },
  unavailable: { hps: 'no hps/open_clip_config.json under the metrics models folder' },
};

test('a run without quality_metrics (a service before issue 25) or with null shows nothing', () => {
  assert.equal(runQuality({ id: 'tr_1', status: 'succeeded' }), null);
  assert.equal(runQuality({ quality_metrics: null }), null);
  assert.equal(runQuality(undefined), null);
  assert.deepEqual(requestedQuality({ params: { validation: { prompts: [] } } }), { metrics: [], finalImages: 0 });
  assert.deepEqual(requestedQuality({ params: { validation: { metrics: ['clip_t', 3, 'fid'], final_images: 4 } } }), {
    metrics: ['clip_t', 'fid'],
    finalImages: 4,
  });
});

test("a validation event's metrics become a set; one that scored nothing is none", () => {
  const event = { step: 10, validation_loss: 0.1, images: [], metrics: { clip_t: 25, clip_i: 0.8, bogus: 'x' }, unavailable: {}, final: false };
  assert.deepEqual(qualitySetOf(event), { step: 10, final: false, values: { clip_t: 25, clip_i: 0.8 }, unavailable: {} });
  assert.equal(qualitySetOf({ step: 10, validation_loss: 0.1, images: [] }), null, 'an event of a service before issue 25');
  assert.equal(qualitySetOf({ step: 10, metrics: {}, unavailable: {}, final: false }), null);
  // Only unavailable: still a set, so the reason shows.
  assert.deepEqual(qualitySetOf({ metrics: {}, unavailable: { fid: 'too few images' }, final: true }, 20), {
    step: 20,
    final: true,
    values: {},
    unavailable: { fid: 'too few images' },
  });
  // The run resource's form, and the engine's metric_ prefix dropped.
  assert.deepEqual(runQuality({ quality_metrics: { step: 5, final: false, values: { metric_hps: 0.3 }, unavailable: {} } }), {
    step: 5,
    final: false,
    values: { hps: 0.3 },
    unavailable: {},
  });
});

test('KID and IS read with their deviation; the others alone; an absent metric as a dash', () => {
  assert.equal(formatMetric(finalSet, 'clip_t'), '27.12');
  assert.equal(formatMetric(finalSet, 'kid'), '0.01235 ± 0.0046');
  assert.equal(formatMetric(finalSet, 'is'), '1.5 ± 0.25');
  assert.equal(formatMetric(finalSet, 'lpips'), '—');
  assert.equal(formatMetric(null, 'fid'), '—');
  assert.equal(sampleSizes(finalSet), '16 generated and 3 reference images; KID over 100 subsets of 16, IS in 8 splits');
  assert.equal(sampleSizes({ step: 1, final: false, values: { clip_t: 20 }, unavailable: {} }), null);
  assert.equal(setLabel(finalSet), 'final set (step 20)');
  assert.deepEqual(metricsOf(finalSet), ['clip_t', 'hps', 'fid', 'kid', 'is'], 'computed and unavailable ones, in the console order');
});

test('the latest set is the final one, else the highest step', () => {
  const step = (n: number): QualitySet => ({ step: n, final: false, values: { clip_t: n }, unavailable: {} });
  assert.equal(latestSet([]), null);
  assert.equal(latestSet([step(10), step(30), step(20)])?.step, 30);
  assert.equal(latestSet([step(10), finalSet, step(30)]), finalSet);
});

test('a comparison has a column for each metric some run has a value of, in the console order', () => {
  const other: QualitySet = { step: 100, final: true, values: { lpips: 0.4, clip_i: 0.7 }, unavailable: { fid: 'x' } };
  assert.deepEqual(metricColumns([finalSet, null, other]), ['clip_t', 'clip_i', 'lpips', 'fid', 'kid', 'is']);
  assert.deepEqual(metricColumns([null, null]), []);
});

test('GET /v1/quality-metrics: entries in the console order, malformed ones dropped, an odd body as none', () => {
  const body = {
    data: [
      { metric: 'fid', network: 'inception', available: false, reason: 'no inception/model.safetensors', description: 'Fréchet distance' },
      { metric: 'clip_t', network: 'clip', available: true, reason: null, description: 'CLIP score' },
      { metric: 'is' },
    ],
  };
  assert.deepEqual(
    metricInfosOf(body).map((info) => [info.metric, info.available, info.reason]),
    [['clip_t', true, null], ['fid', false, 'no inception/model.safetensors']],
  );
  assert.deepEqual(metricInfosOf({ type: 'about:blank', status: 404 }), []);
});
