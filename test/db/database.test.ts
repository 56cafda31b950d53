// The Database contract, identical on both connections: query with parameters, scripts,
// transactions that commit or roll back as a whole, NOTIFY delivered to listeners at
// commit, and close.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Database } from '../../src/db/database.js';
import { createPgliteDatabase } from '../../src/db/pglite.js';
import { createPostgresDatabase } from '../../src/db/postgres.js';
import { createScratchDatabase } from '../helper.js';

const connections: Array<{ name: string; open(t: import('node:test').TestContext): Promise<Database> }> = [
  {
    name: 'pg Pool',
    async open(t) {
      const scratch = await createScratchDatabase();
      t.after(() => scratch.drop());
      const db = createPostgresDatabase({ connectionString: scratch.url, max: 2 });
      t.after(() => db.close());
      return db;
    },
  },
  {
    name: 'PGlite',
    async open(t) {
      const db = await createPgliteDatabase();
      t.after(() => db.close());
      return db;
    },
  },
];

for (const connection of connections) {
  describe(`Database on ${connection.name}`, () => {
    test('queries, scripts, commits and rollbacks behave alike', async (t) => {
      const db = await connection.open(t);
      assert.equal(db.kind, connection.name === 'PGlite' ? 'pglite' : 'postgres');
      await db.exec('CREATE TABLE things (id int PRIMARY KEY, label text); INSERT INTO things VALUES (1, $$one$$);');

      const inserted = await db.query('INSERT INTO things VALUES ($1, $2), ($3, $4)', [2, 'two', 3, 'three']);
      assert.equal(inserted.rowCount, 2);
      const selected = await db.query<{ id: number; label: string }>('SELECT id, label FROM things WHERE id > $1 ORDER BY id', [1]);
      assert.deepEqual(selected.rows, [{ id: 2, label: 'two' }, { id: 3, label: 'three' }]);
      assert.equal(selected.rowCount, 2);

      const committed = await db.transaction(async (tx) => {
        await tx.query('UPDATE things SET label = $1 WHERE id = 1', ['uno']);
        return (await tx.query<{ label: string }>('SELECT label FROM things WHERE id = 1')).rows[0]!.label;
      });
      assert.equal(committed, 'uno');

      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.query('UPDATE things SET label = $1', ['changed']);
          await tx.query('INSERT INTO things VALUES (2, $1)', ['duplicate key']);
        }),
        /duplicate key/,
      );
      const after = await db.query<{ label: string }>('SELECT label FROM things ORDER BY id');
      assert.deepEqual(after.rows.map((r) => r.label), ['uno', 'two', 'three'], 'the failed transaction left nothing behind');

      const counted = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM things');
      assert.equal(typeof counted.rows[0]!.n, 'number');
      const stamped = await db.query<{ at: Date }>('SELECT now() AS at');
      assert.ok(stamped.rows[0]!.at instanceof Date, 'timestamptz arrives as a Date on both');
    });

    test('listen hears a NOTIFY once its transaction commits, never one rolled back, and stops when unlistened', async (t) => {
      const db = await connection.open(t);
      const heard: string[] = [];
      let wake: () => void = () => {};
      const unlisten = await db.listen('things_changed', () => {
        heard.push('notified');
        wake();
      });
      const next = () => new Promise<void>((resolve) => { wake = resolve; });

      let notified = next();
      await db.transaction(async (tx) => {
        await tx.query(`SELECT pg_notify('things_changed', '')`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        assert.deepEqual(heard, [], 'nothing before the commit');
      });
      await notified;
      assert.deepEqual(heard, ['notified']);

      await assert.rejects(db.transaction(async (tx) => {
        await tx.query(`SELECT pg_notify('things_changed', '')`);
        throw new Error('rolled back');
      }));
      notified = next();
      await db.query(`SELECT pg_notify('things_changed', '')`);
      await notified;
      assert.deepEqual(heard, ['notified', 'notified'], 'the rolled-back one was never heard');

      await unlisten();
      await db.query(`SELECT pg_notify('things_changed', '')`);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(heard.length, 2);
    });
  });
}
