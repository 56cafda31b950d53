// /healthz and /readyz: no API key; readiness follows the database and its migrations.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { migrate } from '../../src/db/migrator.js';
import { migrationsDir } from '../../src/paths.js';
import { API_KEY_PREFIX } from '../../src/services/api-keys.js';
import { createScratchDatabase, fileTempDir, withTestApp } from '../helper.js';

test('healthz and readyz answer without an API key', async (t) => {
  const { app } = await withTestApp(t);
  const health = await app.inject({ method: 'GET', url: '/healthz' });
  assert.equal(health.statusCode, 200);
  assert.deepEqual(health.json(), { status: 'ok' });
  const ready = await app.inject({ method: 'GET', url: '/readyz' });
  assert.equal(ready.statusCode, 200);
  assert.equal(ready.json().status, 'ready');
  assert.equal(ready.json().database, 'postgres');
  assert.equal(ready.json().migration, app.migrations[app.migrations.length - 1]!.version);
});

// A replica may start before the migration job ran (MIGRATE_ON_START=false) or while the
// database is down: it must come up, stay alive, and report not-ready. So no start-up hook
// may require the database or its tables.
test('readyz answers 503 until the migrations are applied, then 200', async (t) => {
  const scratch = await createScratchDatabase();
  t.after(() => scratch.drop());
  const config = loadConfig({ LOG_LEVEL: 'silent', DATA_DIR: fileTempDir(), DATABASE_URL: scratch.url, MIGRATE_ON_START: 'false' });
  const app = await buildApp(config, { logger: false });
  t.after(() => app.close());
  await app.ready();

  const before = await app.inject({ method: 'GET', url: '/readyz' });
  assert.equal(before.statusCode, 503);
  assert.match(String(before.headers['content-type']), /^application\/problem\+json/);
  assert.match(before.json().detail, /Migrations not applied yet: 1/);
  assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'alive while not ready');

  await migrate(app.db, migrationsDir);
  assert.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
});

test('while the database does not answer, readyz and the API answer 503 with Retry-After and healthz stays 200', async (t) => {
  const config = loadConfig({
    LOG_LEVEL: 'silent',
    DATA_DIR: fileTempDir(),
    // Nothing listens on port 1.
    DATABASE_URL: 'postgres://postgres@127.0.0.1:1/postgres',
    MIGRATE_ON_START: 'false',
  });
  const app = await buildApp(config, { logger: false });
  t.after(() => app.close());
  await app.ready();
  for (const [url, headers] of [
    ['/readyz', {}],
    ['/v1/datasets', { authorization: `Bearer ${API_KEY_PREFIX}not-looked-up-until-the-database-answers` }],
  ] as const) {
    const response = await app.inject({ method: 'GET', url, headers });
    assert.equal(response.statusCode, 503, url);
    assert.match(String(response.headers['content-type']), /^application\/problem\+json/, url);
    assert.equal(response.headers['retry-after'], '5', url);
    assert.equal(response.json().type, 'tag:sdxl-lora-service,2026:problem:database-unavailable', url);
    assert.match(response.json().detail, /The database does not answer/, url);
  }
  assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'alive while the database is away');
});
