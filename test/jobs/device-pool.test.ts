// A training worker's devices: a run takes the devices it asks and gives them back; a shared
// TRAIN_DEVICE takes TRAINING_SLOTS runs, each on that one device.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DevicePool } from '../../src/jobs/device-pool.js';

test('TRAIN_DEVICES: each device trains one run; a run takes several and gives them all back', () => {
  const pool = new DevicePool(['cuda:0', 'cuda:1', 'cuda:2']);
  assert.deepEqual(pool.take('a', 2), ['cuda:0', 'cuda:1']);
  assert.deepEqual([pool.free(), pool.busy()], [1, 2]);
  assert.throws(() => pool.take('b', 2), /asks 2 devices but 1 are free/);
  assert.deepEqual(pool.take('b', 1), ['cuda:2']);
  assert.equal(pool.free(), 0);
  pool.give('a');
  assert.deepEqual(pool.of('a'), []);
  assert.deepEqual(pool.take('c', 2), ['cuda:0', 'cuda:1'], 'the freed devices');
  pool.give('b');
  pool.give('c');
  pool.give('c'); // a second give is nothing
  assert.deepEqual([pool.free(), pool.busy()], [3, 0]);
});

test('a shared TRAIN_DEVICE: one device, TRAINING_SLOTS runs on it', () => {
  const pool = new DevicePool(['cpu'], 2);
  assert.deepEqual(pool.take('a', 1), ['cpu']);
  assert.equal(pool.free(), 1, 'room for one more run');
  assert.deepEqual(pool.take('b', 1), ['cpu']);
  assert.deepEqual([pool.free(), pool.busy(), pool.size], [0, 1, 1]);
});
