// memoryStats(device), read by /metrics: the process's resident set and its high-water mark
// on the CPU (the CUDA allocator's figures on a GPU); a device libtorch does not know is an error.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { memoryStats } from '../../src/engine/index.js';

test('memoryStats("cpu") is the resident set, at most its peak, and grows with an allocation', () => {
  const before = memoryStats('cpu');
  assert.ok(before.inUseBytes > 10 * 1024 * 1024, `resident ${before.inUseBytes}`);
  assert.ok(before.peakBytes >= before.inUseBytes);
  const block = Buffer.alloc(64 * 1024 * 1024, 1); // touched, so resident
  const after = memoryStats('cpu');
  assert.ok(after.inUseBytes >= before.inUseBytes + 32 * 1024 * 1024, `resident grew from ${before.inUseBytes} to ${after.inUseBytes}`);
  assert.ok(after.peakBytes >= after.inUseBytes);
  assert.equal(block[block.length - 1], 1);
});

test('memoryStats of a device that does not exist is an error', () => {
  assert.throws(() => memoryStats('tpu:0'));
});
