// npm run create-api-key and npm run migrate against a real Postgres database.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { projectRoot } from '../../src/paths.js';
import { createScratchDatabase, withTestApp } from '../helper.js';

const run = promisify(execFile);

function npmRun(script: string, args: string[], env: Record<string, string>) {
  return run('npm', ['run', '--silent', script, '--', ...args], { cwd: projectRoot, env: { ...process.env, ...env } });
}

test('create-api-key prints a new working key once, for a new or existing tenant', async (t) => {
  const ctx = await withTestApp(t);
  const env = { DATABASE_URL: ctx.config.databaseUrl!, LOG_LEVEL: 'silent' };
  const first = await npmRun('create-api-key', ['--tenant', 'acme-cli'], env);
  const key = first.stdout.trim();
  assert.match(key, /^sdxl_[A-Za-z0-9_-]{43}$/, 'stdout is the key alone');
  assert.match(first.stderr, /tenant "acme-cli".*shown only now/);

  const auth = { authorization: `Bearer ${key}` };
  const created = await ctx.app.inject({ method: 'POST', url: '/v1/datasets', headers: auth, payload: { name: 'cli', class_word: 'dog' } });
  assert.equal(created.statusCode, 201);

  // A second key for the same tenant sees the same data; the key itself is never stored.
  const second = (await npmRun('create-api-key', ['--tenant', 'acme-cli'], env)).stdout.trim();
  assert.notEqual(second, key);
  const listed = await ctx.app.inject({ method: 'GET', url: '/v1/datasets', headers: { authorization: `Bearer ${second}` } });
  assert.deepEqual(listed.json().data.map((d: { id: string }) => d.id), [created.json().id]);
  const { rows } = await ctx.db.query<{ n: number }>('SELECT count(*)::int AS n FROM api_keys WHERE key_hash = $1 OR key_prefix = $1', [key]);
  assert.equal(rows[0]!.n, 0);
});

test('create-api-key without --tenant fails with usage and exit code 2', async () => {
  await assert.rejects(npmRun('create-api-key', [], { DATABASE_URL: 'postgres://unused@127.0.0.1:1/x' }), (error: { code: number; stderr: string }) => {
    assert.equal(error.code, 2);
    assert.match(error.stderr, /--tenant is required/);
    return true;
  });
});

test('migrate applies everything to an empty database, then reports nothing to do', async (t) => {
  const scratch = await createScratchDatabase();
  t.after(() => scratch.drop());
  const env = { DATABASE_URL: scratch.url };
  const first = await npmRun('migrate', [], env);
  assert.match(first.stdout, /applied migrations 1(, \d+)*; database at version \d+/);
  const second = await npmRun('migrate', [], env);
  assert.match(second.stdout, /nothing to apply/);
});
