// The retry schedule: the Standard Webhooks steps, jitter within 10 %, Retry-After in seconds
// or as an HTTP date pushing an attempt later but never sooner nor past 10 h, eight attempts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_ATTEMPTS, nextRetryDelay, parseRetryAfter, RETRY_DELAYS_MS } from '../../src/webhooks/retry-schedule.js';

const HOUR = 3_600_000;

test('the steps after each failed attempt, with jitter of at most 10 %, and none after the eighth', () => {
  assert.equal(MAX_ATTEMPTS, 8);
  assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map((n) => nextRetryDelay(n, undefined, () => 0)), [...RETRY_DELAYS_MS]);
  assert.deepEqual(RETRY_DELAYS_MS, [5_000, 300_000, 1_800_000, 2 * HOUR, 5 * HOUR, 10 * HOUR, 10 * HOUR]);
  assert.equal(nextRetryDelay(1, undefined, () => 0.999), Math.round(5_000 * 1.0999));
  assert.equal(nextRetryDelay(8, undefined, () => 0), undefined);
});

test('Retry-After pushes the next attempt later, never sooner, and at most 10 h', () => {
  assert.equal(nextRetryDelay(1, 120_000, () => 0), 120_000);
  assert.equal(nextRetryDelay(3, 1_000, () => 0), 1_800_000, 'a shorter Retry-After does not hurry the schedule');
  assert.equal(nextRetryDelay(1, 30 * HOUR, () => 0), 10 * HOUR);
});

test('Retry-After is read as seconds or as an HTTP date; anything else is ignored', () => {
  const now = new Date('2026-12-03T12:00:00Z');
  assert.equal(parseRetryAfter('120', now), 120_000);
  assert.equal(parseRetryAfter(' 7 ', now), 7_000);
  assert.equal(parseRetryAfter('Thu, 03 Dec 2026 12:05:00 GMT', now), 300_000);
  assert.equal(parseRetryAfter('Thu, 03 Dec 2026 11:00:00 GMT', now), 0, 'a date in the past: at once');
  assert.equal(parseRetryAfter('soon', now), undefined);
  assert.equal(parseRetryAfter(undefined, now), undefined);
  assert.equal(parseRetryAfter(['60', '5'], now), 60_000);
});
