// API keys are cached per replica (API_KEY_CACHE_MS) and still honour revocation: a revoke
// commits a NOTIFY that empties every replica's cache at once; without it (the listener
// lost) the TTL bounds how long a revoked key keeps working.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { hashApiKey, issueApiKey, revokeApiKey } from '../../src/services/api-keys.js';
import { withTestApp, type TestApp } from '../helper.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function status(ctx: TestApp, key: string): Promise<number> {
  const response = await ctx.app.inject({ method: 'GET', url: '/v1/datasets', headers: { authorization: `Bearer ${key}` } });
  return response.statusCode;
}

/** Revokes `key` in a session whose triggers do not fire (replica mode): no NOTIFY, as if the listener were down. */
async function revokeSilently(ctx: TestApp, key: string): Promise<void> {
  const client = new pg.Client({ connectionString: ctx.config.databaseUrl });
  await client.connect();
  try {
    await client.query("SET session_replication_role = 'replica'");
    await client.query('UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1', [hashApiKey(key)]);
  } finally {
    await client.end();
  }
}

/** Milliseconds until the key is refused, polling every 10 ms; fails after `limitMs`. */
async function msUntilRefused(ctx: TestApp, key: string, limitMs: number): Promise<number> {
  const started = Date.now();
  while ((await status(ctx, key)) === 200) {
    if (Date.now() - started > limitMs) assert.fail(`the revoked key still works after ${limitMs} ms`);
    await sleep(10);
  }
  assert.equal(await status(ctx, key), 401);
  return Date.now() - started;
}

for (const embedded of [false, true]) {
  test(`a revoked key is refused at once although its owner is cached for a minute (${embedded ? 'pglite' : 'postgres'})`, async (t) => {
    const ctx = await withTestApp(t, { embedded, env: { API_KEY_CACHE_MS: '60000' } });
    const { key, keyId } = await issueApiKey(ctx.db, `revoked-${embedded}`);
    assert.equal(await status(ctx, key), 200, 'cached now');
    assert.equal(await revokeApiKey(ctx.db, keyId), true);
    const ms = await msUntilRefused(ctx, key, 2000);
    t.diagnostic(`refused ${ms} ms after the revoke committed`);
    assert.equal(await status(ctx, ctx.apiKey), 200, 'other keys still work');
    assert.equal(await revokeApiKey(ctx.db, keyId), false, 'revoking twice matches nothing');
  });
}

test('without the NOTIFY the cache serves a revoked key for API_KEY_CACHE_MS at most', async (t) => {
  const ttlMs = 600;
  const ctx = await withTestApp(t, { env: { API_KEY_CACHE_MS: String(ttlMs) } });
  const { key } = await issueApiKey(ctx.db, 'silent-revoke');
  assert.equal(await status(ctx, key), 200);
  await revokeSilently(ctx, key);
  const revokedAt = Date.now();
  assert.equal(await status(ctx, key), 200, 'still cached: the database was not asked');
  await msUntilRefused(ctx, key, ttlMs + 1000);
  assert.ok(Date.now() - revokedAt <= ttlMs + 1000);
});

test('API_KEY_CACHE_MS=0 asks the database on every request', async (t) => {
  const ctx = await withTestApp(t, { env: { API_KEY_CACHE_MS: '0' } });
  const { key } = await issueApiKey(ctx.db, 'uncached');
  assert.equal(await status(ctx, key), 200);
  await revokeSilently(ctx, key);
  assert.equal(await status(ctx, key), 401, 'refused on the very next request');
});
