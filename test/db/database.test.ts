// The Database contract, identical on both connections: query with parameters, scripts,
// transactions that commit or roll back as a whole, NOTIFY delivered to listeners at
// commit, and close. On a pg Pool also: a server out of reach is DatabaseUnavailableError,
// and a LISTEN connection the server ends is opened again.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Database } from '../../src/db/database.js';
import { createPgliteDatabase } from '../../src/db/pglite.js';
import { createPostgresDatabase } from '../../src/db/postgres.js';
import { DatabaseUnavailableError, isDatabaseUnavailable } from '../../src/db/unavailable.js';
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

    test('listen hears a NOTIFY and its payload once its transaction commits, never one rolled back, and stops when closed', async (t) => {
      const db = await connection.open(t);
      const heard: Array<string | undefined> = [];
      let wake: () => void = () => {};
      const listener = await db.listen('things_changed', (payload) => {
        heard.push(payload);
        wake();
      });
      assert.equal(listener.connected(), true);
      const next = () => new Promise<void>((resolve) => { wake = resolve; });

      let notified = next();
      await db.transaction(async (tx) => {
        await tx.query(`SELECT pg_notify('things_changed', 'first')`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        assert.deepEqual(heard, [], 'nothing before the commit');
      });
      await notified;
      assert.deepEqual(heard, ['first']);

      await assert.rejects(db.transaction(async (tx) => {
        await tx.query(`SELECT pg_notify('things_changed', 'rolled back')`);
        throw new Error('rolled back');
      }));
      notified = next();
      await db.query(`SELECT pg_notify('things_changed', 'second')`);
      await notified;
      assert.deepEqual(heard, ['first', 'second'], 'the rolled-back one was never heard');

      await listener.close();
      await db.query(`SELECT pg_notify('things_changed', 'third')`);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(heard.length, 2);
    });
  });
}

describe('Database on a pg Pool when the server goes away', () => {
  test('a server that does not answer is DatabaseUnavailableError; a failing statement is not', async (t) => {
    // Nothing listens on port 1.
    const away = createPostgresDatabase({ connectionString: 'postgres://postgres@127.0.0.1:1/postgres', max: 1 });
    t.after(() => away.close());
    for (const attempt of [() => away.query('SELECT 1'), () => away.transaction((tx) => tx.query('SELECT 1'))]) {
      const error = await attempt().then(() => undefined, (e: unknown) => e);
      assert.ok(error instanceof DatabaseUnavailableError, String(error));
      assert.equal(isDatabaseUnavailable(new Error('wrapped', { cause: error })), true);
    }

    const scratch = await createScratchDatabase();
    t.after(() => scratch.drop());
    const db = createPostgresDatabase({ connectionString: scratch.url, max: 1 });
    t.after(() => db.close());
    const failed = await db.query('SELECT * FROM no_such_table').then(() => undefined, (e: unknown) => e);
    assert.ok(failed instanceof Error && !isDatabaseUnavailable(failed), String(failed));
  });

  test('a LISTEN whose connection is terminated says so, connects again and hears NOTIFYs again', async (t) => {
    const scratch = await createScratchDatabase();
    t.after(() => scratch.drop());
    const db = createPostgresDatabase({ connectionString: scratch.url, max: 2 });
    t.after(() => db.close());
    const channel = `relisten_${process.pid}_${Date.now()}`;
    const heard: Array<string | undefined> = [];
    let wake: () => void = () => {};
    const next = () => new Promise<void>((resolve) => { wake = resolve; });
    const listener = await db.listen(channel, (payload) => {
      heard.push(payload);
      wake();
    });
    t.after(() => listener.close());

    // The server ends the LISTEN connection, as a restart or a failover would.
    let notified = next();
    const { rows } = await db.query<{ ended: boolean }>(
      `SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE query = $1`, [`LISTEN "${channel}"`]);
    assert.deepEqual(rows, [{ ended: true }]);
    await notified;
    assert.deepEqual(heard, [undefined], 'the loss is told: what was watched may have changed unheard');
    assert.equal(listener.connected(), false);

    notified = next();
    await notified;
    assert.deepEqual(heard, [undefined, undefined], 'and so is the new connection: read again what may have been missed');
    assert.equal(listener.connected(), true);

    notified = next();
    await db.query(`SELECT pg_notify($1, 'after')`, [channel]);
    await notified;
    assert.deepEqual(heard, [undefined, undefined, 'after']);
  });
});
