// Environment parsing: defaults, conversion, and errors naming every bad variable.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.js';

test('defaults: embedded database under ./data, port 3000, info logs', () => {
  const config = loadConfig({});
  assert.equal(config.port, 3000);
  assert.equal(config.host, '127.0.0.1');
  assert.equal(config.databaseUrl, undefined);
  assert.equal(config.dataDir, path.resolve('data'));
  assert.equal(config.logLevel, 'info');
  assert.equal(config.migrateOnStart, true);
  assert.equal(config.bodyLimitBytes, 1024 * 1024);
});

test('values are converted from strings; empty means unset', () => {
  const config = loadConfig({ PORT: '8080', MIGRATE_ON_START: 'false', LOG_LEVEL: 'debug', DATABASE_URL: '', BODY_LIMIT_BYTES: '2048', HOST: '' });
  assert.equal(config.port, 8080);
  assert.equal(config.migrateOnStart, false);
  assert.equal(config.logLevel, 'debug');
  assert.equal(config.databaseUrl, undefined);
  assert.equal(config.bodyLimitBytes, 2048);
  assert.equal(config.host, '127.0.0.1');
});

test('invalid values throw a ConfigError naming each variable once', () => {
  assert.throws(
    () => loadConfig({ PORT: '70000', LOG_LEVEL: 'loud', DATABASE_POOL_MAX: '0' }),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /PORT/);
      assert.match(error.message, /LOG_LEVEL/);
      assert.match(error.message, /DATABASE_POOL_MAX/);
      assert.equal(error.message.match(/LOG_LEVEL/g)!.length, 1);
      return true;
    },
  );
});

test('ROLE: all runs every worker; api runs none whatever the slot variables say; worker keeps its slots', () => {
  const slots = { TRAINING_SLOTS: '2', GENERATION_SLOTS: '3', CAPTION_WORKER_JOBS: '4', WEBHOOK_SLOTS: '5', PRELOAD_MODELS: 'sdxl-tiny-demo, other ,' };
  const all = loadConfig({ ...slots });
  assert.equal(all.role, 'all');
  const counts = (c: ReturnType<typeof loadConfig>) => [c.training.slots, c.generation.slots, c.captionWorker.maxJobs, c.webhooks.slots];
  assert.deepEqual(counts(all), [2, 3, 4, 5]);
  assert.deepEqual(all.preloadModels, ['sdxl-tiny-demo', 'other']);
  const api = loadConfig({ ...slots, ROLE: 'api' });
  assert.deepEqual(counts(api), [0, 0, 0, 0]);
  assert.deepEqual(api.preloadModels, [], 'an API replica loads no model');
  const worker = loadConfig({ ...slots, ROLE: 'worker' });
  assert.deepEqual(counts(worker), [2, 3, 4, 5]);
  assert.throws(() => loadConfig({ ROLE: 'trainer' }), (error: unknown) => error instanceof ConfigError && /ROLE/.test(error.message));
});

test('metrics and the API key cache: defaults and settings', () => {
  const defaults = loadConfig({});
  assert.deepEqual(defaults.metrics, { port: 0, token: undefined });
  assert.equal(defaults.apiKeyCacheMs, 5000);
  const set = loadConfig({ METRICS_PORT: '9464', METRICS_TOKEN: 't0k', API_KEY_CACHE_MS: '0' });
  assert.deepEqual(set.metrics, { port: 9464, token: 't0k' });
  assert.equal(set.apiKeyCacheMs, 0);
  assert.throws(() => loadConfig({ API_KEY_CACHE_MS: '3600000' }), /API_KEY_CACHE_MS/);
});

test('TRAIN_DEVICES: a comma list (cpu may repeat, cpu*N), or all; TRAINING_SLOTS defaults to one per device', () => {
  const gpus = loadConfig({ TRAIN_DEVICES: 'cuda:0, cuda:1,cuda:3' });
  assert.deepEqual(gpus.training.devices, { pool: ['cuda:0', 'cuda:1', 'cuda:3'] });
  assert.equal(gpus.training.slots, 3, 'one run per device unless TRAINING_SLOTS says fewer');
  assert.deepEqual(loadConfig({ TRAIN_DEVICES: 'cpu*2' }).training.devices, { pool: ['cpu', 'cpu'] });
  assert.deepEqual(loadConfig({ TRAIN_DEVICES: 'cpu,cpu*2' }).training.devices, { pool: ['cpu', 'cpu', 'cpu'] });
  const all = loadConfig({ TRAIN_DEVICES: 'all', TRAINING_SLOTS: '1' });
  assert.deepEqual(all.training.devices, { pool: 'all' });
  assert.equal(all.training.slots, 1);
  assert.equal(loadConfig({ TRAIN_DEVICES: 'all' }).training.slots, undefined, 'all: one per device, counted at start');
  // TRAIN_DEVICE stays: one device that TRAINING_SLOTS runs share (default 1).
  assert.deepEqual(loadConfig({ TRAIN_DEVICE: 'cuda:1' }).training, { ...loadConfig({ TRAIN_DEVICE: 'cuda:1' }).training, devices: { shared: 'cuda:1' }, slots: 1 });
  assert.deepEqual(loadConfig({}).training.devices, { shared: undefined });
  assert.equal(loadConfig({ TRAIN_DEVICES: 'cpu*2', ROLE: 'api' }).training.slots, 0);
});

test('TRAIN_DEVICES: bad values and TRAIN_DEVICE beside it are startup errors naming the variables', () => {
  const refused = (env: Record<string, string>, why: RegExp) =>
    assert.throws(() => loadConfig(env), (error: unknown) => error instanceof ConfigError && /TRAIN_DEVICES/.test(error.message) && why.test(error.message), JSON.stringify(env));
  refused({ TRAIN_DEVICES: 'gpu0' }, /"gpu0": expected a comma list of cuda:N, cpu or cpu\*N/);
  refused({ TRAIN_DEVICES: 'cuda' }, /"cuda"/);
  refused({ TRAIN_DEVICES: 'cuda:0,,cuda:1' }, /""/);
  refused({ TRAIN_DEVICES: 'cpu*0' }, /"cpu\*0"/);
  refused({ TRAIN_DEVICES: 'cuda:0,cuda:0' }, /cuda:0 twice/);
  refused({ TRAIN_DEVICES: 'cpu,cuda:0' }, /mixes cpu and cuda/);
  refused({ TRAIN_DEVICES: 'cpu*65' }, /at most 64/);
  refused({ TRAIN_DEVICES: 'cuda:0', TRAIN_DEVICE: 'cuda:0' }, /TRAIN_DEVICE and TRAIN_DEVICES are both set/);
  assert.throws(() => loadConfig({ TRAINING_SLOTS: '-1' }), /TRAINING_SLOTS/);
});
