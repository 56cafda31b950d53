// The held-out split: the same images for every run of a dataset, at least one held out
// and never all, and a share that grows the held-out part without reshuffling it.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { splitHeldOut } from '../../src/services/training-data-plan.js';

const images = (count: number, salt = '') =>
  Array.from({ length: count }, (_, i) => ({ id: `img_${i}`, sha256: createHash('sha256').update(`${salt}${i}`).digest('hex') }));

test('a split holds out about its share, the same images every time, in the given order', () => {
  const all = images(2000);
  const { training, heldOut } = splitHeldOut(all, 0.1);
  assert.equal(training.length + heldOut.length, all.length);
  assert.ok(heldOut.length > 150 && heldOut.length < 250, `${heldOut.length} of 2000 held out at 0.1`);
  assert.deepEqual(splitHeldOut([...all].reverse(), 0.1).heldOut.map((image) => image.id).sort(), heldOut.map((image) => image.id).sort(),
    'the order images come in does not choose them');
  assert.deepEqual(heldOut, all.filter((image) => heldOut.includes(image)), 'kept in the given order');
  const wider = new Set(splitHeldOut(all, 0.3).heldOut);
  assert.ok(heldOut.every((image) => wider.has(image)), 'a larger share holds out the same images and more');
});

test('a split holds out at least one image and never all of them; share 0 holds out none', () => {
  for (const count of [2, 3, 5]) {
    const { training, heldOut } = splitHeldOut(images(count, 'small'), 0.01);
    assert.equal(heldOut.length, 1, `${count} images at 0.01`);
    assert.equal(training.length, count - 1);
    assert.ok(splitHeldOut(images(count, 'small'), 0.5).training.length >= 1);
  }
  assert.deepEqual(splitHeldOut(images(2, 'two'), 0.5).training.length, 1);
  assert.deepEqual(splitHeldOut(images(10), 0).heldOut, []);
  assert.deepEqual(splitHeldOut(images(1), 0.5).heldOut, [], 'one image: nothing to hold out (refused before, naming the param)');
});
