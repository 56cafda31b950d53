// Database on embedded PGlite (Postgres compiled to WebAssembly): same SQL, no server.
// One PGlite instance is one connection; it queues queries and transactions itself.
import fs from 'node:fs/promises';
import { PGlite, type Transaction } from '@electric-sql/pglite';
import type { Database, QueryResult, Queryable, SqlParam } from './database.js';

function wrap(client: PGlite | Transaction): Queryable {
  return {
    async query<Row>(text: string, params?: readonly SqlParam[]): Promise<QueryResult<Row>> {
      const result = await client.query<Row>(text, params as unknown[] | undefined);
      // affectedRows counts INSERT/UPDATE/DELETE and is 0 for a SELECT; pg's rowCount covers both.
      return { rows: result.rows, rowCount: Math.max(result.affectedRows ?? 0, result.rows.length) };
    },
    async exec(script: string): Promise<void> {
      await client.exec(script);
    },
  };
}

/** Opens (creating when missing) the database stored in `dataDir`; in memory when `dataDir` is undefined. */
export async function createPgliteDatabase(dataDir?: string): Promise<Database> {
  if (dataDir !== undefined) await fs.mkdir(dataDir, { recursive: true });
  const pglite = await PGlite.create(dataDir);
  const queryable = wrap(pglite);
  return {
    kind: 'pglite',
    query: queryable.query,
    exec: queryable.exec,
    transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      return pglite.transaction((tx) => fn(wrap(tx)));
    },
    poolStats() {
      return { total: 1, idle: 1, waiting: 0, max: 1 };
    },
    async listen(channel: string, onNotify: (payload?: string) => void) {
      const unlisten = await pglite.listen(channel, (payload) => onNotify(payload));
      return {
        connected: () => !pglite.closed,
        async close() {
          if (!pglite.closed) await unlisten();
        },
      };
    },
    async close() {
      if (!pglite.closed) await pglite.close();
    },
  };
}
