// The API key cache on its own: entries expire after the TTL, a clear() forgets all, the
// oldest leave first past the bound, and a TTL of 0 caches nothing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApiKeyCache } from '../../src/services/api-key-cache.js';

const owner = (n: number) => ({ keyId: `key_${n}`, tenant: { id: `tn_${n}`, name: `t${n}` } });

test('an entry is trusted for the TTL, then asked again', () => {
  let now = 1000;
  const cache = new ApiKeyCache({ ttlMs: 5000, now: () => now });
  cache.set('h1', owner(1));
  now += 4999;
  assert.deepEqual(cache.get('h1'), owner(1));
  now += 1;
  assert.equal(cache.get('h1'), undefined, 'expired at the TTL');
  assert.equal(cache.size, 0, 'and dropped');
});

test('clear() forgets every entry (a NOTIFY api_keys arrived)', () => {
  const cache = new ApiKeyCache({ ttlMs: 60_000 });
  cache.set('h1', owner(1));
  cache.set('h2', owner(2));
  cache.clear();
  assert.equal(cache.get('h1'), undefined);
  assert.equal(cache.get('h2'), undefined);
});

test('past maxEntries the oldest entry leaves first', () => {
  const cache = new ApiKeyCache({ ttlMs: 60_000, maxEntries: 2 });
  cache.set('h1', owner(1));
  cache.set('h2', owner(2));
  cache.set('h1', owner(1)); // set again: now the newest
  cache.set('h3', owner(3));
  assert.equal(cache.size, 2);
  assert.equal(cache.get('h2'), undefined, 'the oldest left');
  assert.deepEqual(cache.get('h1'), owner(1));
  assert.deepEqual(cache.get('h3'), owner(3));
});

test('a TTL of 0 caches nothing', () => {
  const cache = new ApiKeyCache({ ttlMs: 0 });
  cache.set('h1', owner(1));
  assert.equal(cache.get('h1'), undefined);
  assert.equal(cache.size, 0);
});
