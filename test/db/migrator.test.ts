// Migrations: applied once, idempotent on re-run, serialized across concurrent migrators
// by the advisory lock, and refused when an applied file was edited.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { loadMigrations, migrate, pendingMigrations } from '../../src/db/migrator.js';
import { createPgliteDatabase } from '../../src/db/pglite.js';
import { createPostgresDatabase } from '../../src/db/postgres.js';
import { migrationsDir } from '../../src/paths.js';
import { createScratchDatabase } from '../helper.js';

async function tempMigrations(files: Record<string, string>): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'sdxl-migrations-'));
  for (const [name, sql] of Object.entries(files)) await fs.writeFile(path.join(dir, name), sql);
  return dir;
}

describe('migrator on Postgres', () => {
  test('applies the shipped migrations once; a second run applies nothing', async (t) => {
    const scratch = await createScratchDatabase();
    t.after(() => scratch.drop());
    const db = createPostgresDatabase({ connectionString: scratch.url });
    t.after(() => db.close());

    const shipped = await loadMigrations(migrationsDir);
    assert.ok(shipped.length >= 1 && shipped[0]!.version === 1);
    assert.deepEqual(await pendingMigrations(db, shipped), shipped.map((m) => m.version));

    const first = await migrate(db, migrationsDir);
    assert.deepEqual(first.applied, shipped.map((m) => m.version));
    const second = await migrate(db, migrationsDir);
    assert.deepEqual(second.applied, []);
    assert.equal(second.current, shipped[shipped.length - 1]!.version);
    assert.deepEqual(await pendingMigrations(db, shipped), []);

    const { rows } = await db.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
    assert.deepEqual(rows.map((r) => r.version), shipped.map((m) => m.version));
    const tables = await db.query<{ t: string }>("SELECT to_regclass('datasets')::text AS t");
    assert.equal(tables.rows[0]!.t, 'datasets');
  });

  test('two migrators started together: both succeed, each migration runs once', async (t) => {
    const scratch = await createScratchDatabase();
    t.after(() => scratch.drop());
    // Not idempotent on purpose (a plain CREATE TABLE and an INSERT), and slow enough that
    // without the lock both migrators would be inside 001 at the same time.
    const dir = await tempMigrations({
      '001_slow.sql': 'SELECT pg_sleep(0.5); CREATE TABLE once (id int); INSERT INTO once VALUES (1);',
      '002_more.sql': 'INSERT INTO once VALUES (2);',
    });
    t.after(() => fs.rm(dir, { recursive: true, force: true }));
    const a = createPostgresDatabase({ connectionString: scratch.url });
    const b = createPostgresDatabase({ connectionString: scratch.url });
    t.after(() => Promise.all([a.close(), b.close()]));

    const results = await Promise.all([migrate(a, dir), migrate(b, dir)]);
    const applied = results.map((r) => r.applied).sort((x, y) => y.length - x.length);
    assert.deepEqual(applied, [[1, 2], []], 'one migrator applied both, the other found nothing to do');
    const { rows } = await a.query<{ id: number }>('SELECT id FROM once ORDER BY id');
    assert.deepEqual(rows.map((r) => r.id), [1, 2]);
  });

  test('a failing migration rolls back entirely and leaves nothing applied', async (t) => {
    const scratch = await createScratchDatabase();
    t.after(() => scratch.drop());
    const dir = await tempMigrations({
      '001_ok.sql': 'CREATE TABLE first_table (id int);',
      '002_broken.sql': 'CREATE TABLE second_table (id int); SELECT no_such_function();',
    });
    t.after(() => fs.rm(dir, { recursive: true, force: true }));
    const db = createPostgresDatabase({ connectionString: scratch.url });
    t.after(() => db.close());

    await assert.rejects(migrate(db, dir), /no_such_function/);
    const { rows } = await db.query<{ a: string | null; b: string | null }>(
      "SELECT to_regclass('first_table')::text AS a, to_regclass('second_table')::text AS b",
    );
    assert.deepEqual(rows[0], { a: null, b: null });
  });

  test('an applied migration that was edited is refused', async (t) => {
    const scratch = await createScratchDatabase();
    t.after(() => scratch.drop());
    const dir = await tempMigrations({ '001_a.sql': 'CREATE TABLE a (id int);' });
    t.after(() => fs.rm(dir, { recursive: true, force: true }));
    const db = createPostgresDatabase({ connectionString: scratch.url });
    t.after(() => db.close());

    await migrate(db, dir);
    await fs.writeFile(path.join(dir, '001_a.sql'), 'CREATE TABLE a (id bigint);');
    await assert.rejects(migrate(db, dir), /changed after it was applied/);
  });

  test('badly named or duplicate migration files are refused before anything runs', async (t) => {
    const badName = await tempMigrations({ 'init.sql': 'SELECT 1;' });
    const duplicate = await tempMigrations({ '001_a.sql': 'SELECT 1;', '1_b.sql': 'SELECT 1;' });
    t.after(() => Promise.all([badName, duplicate].map((d) => fs.rm(d, { recursive: true, force: true }))));
    await assert.rejects(loadMigrations(badName), /not named NNN_name.sql/);
    await assert.rejects(loadMigrations(duplicate), /share version 1/);
  });
});

describe('migrator on PGlite', () => {
  test('the same migrations apply and re-run idempotently on the embedded database', async (t) => {
    const db = await createPgliteDatabase();
    t.after(() => db.close());
    const shipped = await loadMigrations(migrationsDir);
    const first = await migrate(db, migrationsDir);
    assert.deepEqual(first.applied, shipped.map((m) => m.version));
    const [again, concurrent] = await Promise.all([migrate(db, migrationsDir), migrate(db, migrationsDir)]);
    assert.deepEqual(again.applied, []);
    assert.deepEqual(concurrent.applied, []);
    assert.deepEqual(await pendingMigrations(db, shipped), []);
  });
});
