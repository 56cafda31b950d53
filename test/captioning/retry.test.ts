// retry.ts on its own: retry-after parsing, backoff bounds, which statuses are retried.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { backoffMs, failureForStatus, isRetryableStatus, MAX_RETRY_DELAY_MS, parseRetryAfter } from '../../src/captioning/retry.js';

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-11-02T10:00:00Z');
  test('reads retry-after-ms, retry-after seconds and HTTP-dates', () => {
    assert.equal(parseRetryAfter(new Headers({ 'retry-after-ms': '250' }), now), 250);
    assert.equal(parseRetryAfter(new Headers({ 'retry-after-ms': '250', 'retry-after': '9' }), now), 250);
    assert.equal(parseRetryAfter(new Headers({ 'retry-after': '2' }), now), 2000);
    assert.equal(parseRetryAfter(new Headers({ 'retry-after': '0.5' }), now), 500);
    assert.equal(parseRetryAfter(new Headers({ 'retry-after': 'Mon, 02 Nov 2026 10:00:07 GMT' }), now), 7000);
    assert.equal(parseRetryAfter(new Headers({ 'retry-after': 'Mon, 02 Nov 2026 09:59:00 GMT' }), now), 0, 'a past date means now');
  });
  test('ignores absent and unreadable values', () => {
    assert.equal(parseRetryAfter(undefined, now), undefined);
    assert.equal(parseRetryAfter(new Headers(), now), undefined);
    assert.equal(parseRetryAfter(new Headers({ 'retry-after': 'soon' }), now), undefined);
    assert.equal(parseRetryAfter(new Headers({ 'retry-after': '-3' }), now), undefined);
    assert.equal(parseRetryAfter(new Headers({ 'retry-after-ms': 'x', 'retry-after': '1' }), now), 1000);
  });
});

describe('backoffMs', () => {
  test('doubles per retry with jitter in [step/2, step], capped', () => {
    assert.equal(backoffMs(1, 500, () => 0), 250);
    assert.equal(backoffMs(1, 500, () => 1), 500);
    assert.equal(backoffMs(3, 500, () => 1), 2000);
    assert.equal(backoffMs(3, 500, () => 0), 1000);
    assert.equal(backoffMs(30, 500, () => 1), MAX_RETRY_DELAY_MS);
  });
});

describe('status classification', () => {
  test('429, 529, 5xx, 408 and 409 are retried; other 4xx are not', () => {
    for (const s of [408, 409, 429, 500, 502, 503, 504, 529]) assert.equal(isRetryableStatus(s), true, String(s));
    for (const s of [400, 401, 403, 404, 413, 422]) assert.equal(isRetryableStatus(s), false, String(s));
  });
  test('codes, and x-should-retry, which never revives 400/401/403', () => {
    assert.equal(failureForStatus(429, 'm', undefined).code, 'rate_limited');
    assert.equal(failureForStatus(529, 'm', undefined).code, 'overloaded');
    assert.equal(failureForStatus(503, 'm', undefined).code, 'server_error');
    assert.equal(failureForStatus(401, 'm', undefined).code, 'auth');
    assert.equal(failureForStatus(422, 'm', undefined).code, 'bad_request');
    assert.equal(failureForStatus(500, 'm', new Headers({ 'x-should-retry': 'false' })).retryable, false);
    assert.equal(failureForStatus(404, 'm', new Headers({ 'x-should-retry': 'true' })).retryable, true);
    assert.equal(failureForStatus(400, 'm', new Headers({ 'x-should-retry': 'true' })).retryable, false);
    assert.equal(failureForStatus(429, 'm', new Headers({ 'retry-after': '3' })).retryAfterMs, 3000);
  });
});
