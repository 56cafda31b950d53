// src/console/large-dataset-runs.ts and loss-series.ts: what the run page shows of issue 26: the epoch in the progress, the held-out share, and the
// validation loss beside the training loss on the chart, named "held-out loss" with a split.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { epochText, heldOutImagesOf, maxEpochsOf, validationLossLabel, validationSplitOf } from '../../src/console/large-dataset-runs.js';
import { alignedLoss } from '../../src/console/loss-series.js';

test('the epoch of the epochs; nothing before the first step or from a service without them', () => {
  assert.equal(epochText({ step: 120, total_steps: 500, epoch: 2, epochs: 5 }), 'epoch 2 / 5');
  assert.equal(epochText({ step: 120, epoch: 2 }), 'epoch 2');
  assert.equal(epochText({ step: 0, epoch: null, epochs: 5 }), null);
  assert.equal(epochText({ step: 120, total_steps: 500 }), null);
  assert.equal(epochText(undefined), null);
});

test('a split names the validation loss "held-out loss"; no split, or an old run, keeps "validation loss"', () => {
  const split = { params: { validation_split: 0.1, max_epochs: 4 }, metrics: { held_out_images: 120 } };
  assert.deepEqual([validationSplitOf(split), maxEpochsOf(split), heldOutImagesOf(split), validationLossLabel(split)], [0.1, 4, 120, 'held-out loss']);
  const none = { params: { validation_split: 0, max_epochs: null, max_steps: 1000 }, metrics: null };
  assert.deepEqual([validationSplitOf(none), maxEpochsOf(none), heldOutImagesOf(none), validationLossLabel(none)], [0, null, null, 'validation loss']);
  assert.equal(validationLossLabel({ params: { max_steps: 1000 } }), 'validation loss', 'a run from before issue 26');
});

test('the chart: training and validation losses on one step axis, null where a series has no point', () => {
  const series = { steps: [1, 2, 4], loss: [0.5, 0.4, 0.3], avg: [0.5, 0.45, null] };
  assert.deepEqual(alignedLoss(series, [{ step: 3, loss: 0.35 }, { step: 4, loss: 0.32 }]), [
    [1, 2, 3, 4],
    [0.5, 0.4, null, 0.3],
    [0.5, 0.45, null, null],
    [null, null, 0.35, 0.32],
  ]);
  assert.deepEqual(alignedLoss(series, []), [[1, 2, 4], [0.5, 0.4, 0.3], [0.5, 0.45, null], [null, null, null]]);
});
