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
