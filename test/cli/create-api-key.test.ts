// npm run create-api-key, revoke-api-key and migrate against a real Postgres database.
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

test('revoke-api-key by id or by the key: the key is refused; nothing left to revoke is exit 1; no --key is exit 2', async (t) => {
  const ctx = await withTestApp(t);
  const env = { DATABASE_URL: ctx.config.databaseUrl!, LOG_LEVEL: 'silent' };
  const issued = await npmRun('create-api-key', ['--tenant', 'revoke-cli'], env);
  const key = issued.stdout.trim();
  const keyId = /API key (key_\w+)/.exec(issued.stderr)![1]!;
  const auth = { authorization: `Bearer ${key}` };
  assert.equal((await ctx.app.inject({ method: 'GET', url: '/v1/datasets', headers: auth })).statusCode, 200);

  const revoked = await npmRun('revoke-api-key', ['--key', keyId], env);
  assert.match(revoked.stderr, new RegExp(`revoked ${keyId}`));
  // The app caches keys; the revoke's NOTIFY empties its cache.
  let status = 200;
  for (let i = 0; i < 100 && status === 200; i++) {
    status = (await ctx.app.inject({ method: 'GET', url: '/v1/datasets', headers: auth })).statusCode;
    if (status === 200) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.equal(status, 401);

  await assert.rejects(npmRun('revoke-api-key', ['--key', key], env), (error: { code: number; stderr: string }) => {
    assert.equal(error.code, 1, 'already revoked');
    assert.match(error.stderr, /no unrevoked API key matches sdxl_/);
    assert.ok(!error.stderr.includes(key), 'the key is never echoed whole');
    return true;
  });
  const other = (await npmRun('create-api-key', ['--tenant', 'revoke-cli'], env)).stdout.trim();
  assert.match((await npmRun('revoke-api-key', ['--key', other], env)).stderr, /revoked sdxl_/, 'by the key itself');
  await assert.rejects(npmRun('revoke-api-key', [], env), (error: { code: number; stderr: string }) => error.code === 2 && /--key is required/.test(error.stderr));
});
