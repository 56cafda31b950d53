// BatchPacker: batches close at the request limit and before the byte limit would be passed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BatchRequest } from '../../src/captioning/captioner.js';
import { BatchPacker } from '../../src/jobs/caption-batch-packer.js';

const request = (customId: string, bytes: number): BatchRequest => ({ customId, bytes, params: {} });

function pack(limits: { maxRequests: number; maxBytes: number }, sizes: number[]): string[][] {
  const packer = new BatchPacker(limits);
  const batches: string[][] = [];
  sizes.forEach((bytes, i) => {
    const full = packer.add(request(`r${i}`, bytes));
    if (full !== undefined) batches.push(full.map((r) => r.customId));
  });
  const last = packer.flush();
  if (last.length > 0) batches.push(last.map((r) => r.customId));
  return batches;
}

test('a batch closes at maxRequests', () => {
  assert.deepEqual(pack({ maxRequests: 2, maxBytes: 1000 }, [1, 1, 1, 1, 1]), [['r0', 'r1'], ['r2', 'r3'], ['r4']]);
});

test('a batch closes before a request would take it past maxBytes; an oversized request goes alone', () => {
  assert.deepEqual(pack({ maxRequests: 100, maxBytes: 10 }, [4, 6, 1, 9, 30, 2]), [['r0', 'r1'], ['r2', 'r3'], ['r4'], ['r5']]);
});
