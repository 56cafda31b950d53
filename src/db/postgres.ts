// Database on a Postgres server through a pg connection pool.
import pg from 'pg';
import type { Database, QueryResult, Queryable, SqlParam } from './database.js';

export interface PostgresOptions {
  connectionString: string;
  /** Largest number of pooled connections. */
  max?: number;
}

function wrap(client: pg.Pool | pg.PoolClient): Queryable {
  return {
    async query<Row>(text: string, params?: readonly SqlParam[]): Promise<QueryResult<Row>> {
      const result = await client.query(text, params as unknown[] | undefined);
      return { rows: result.rows as Row[], rowCount: result.rowCount ?? result.rows.length };
    },
    async exec(script: string): Promise<void> {
      // Without parameters pg uses the simple query protocol, which accepts several statements.
      await client.query(script);
    },
  };
}

/** How long a LISTEN connection that dropped waits before it connects again. */
const RELISTEN_MS = 1000;

/** LISTEN on a connection of its own (a pooled one would be handed to other queries), re-opened when it drops. */
async function listenOn(connectionString: string, channel: string, onNotify: () => void): Promise<() => Promise<void>> {
  let client: pg.Client | undefined;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;
  const reconnect = (): void => {
    if (stopped) return;
    retry = setTimeout(() => void connect().catch(reconnect), RELISTEN_MS);
    retry.unref();
  };
  const connect = async (): Promise<void> => {
    const next = new pg.Client({ connectionString });
    next.on('notification', (message) => {
      if (message.channel === channel) onNotify();
    });
    next.on('error', () => {});
    next.on('end', () => {
      if (stopped || client !== next) return;
      client = undefined;
      reconnect();
    });
    await next.connect();
    await next.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    client = next;
    if (stopped) await next.end();
  };
  await connect();
  return async () => {
    stopped = true;
    clearTimeout(retry);
    await client?.end();
  };
}

export function createPostgresDatabase(options: PostgresOptions): Database {
  const pool = new pg.Pool({ connectionString: options.connectionString, max: options.max ?? 10 });
  // An idle client losing its server must not crash the process; the next query reconnects.
  pool.on('error', () => {});
  const poolQueryable = wrap(pool);
  return {
    kind: 'postgres',
    query: poolQueryable.query,
    exec: poolQueryable.exec,
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const result = await fn(wrap(client));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      } finally {
        client.release();
      }
    },
    poolStats() {
      return { total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount, max: options.max ?? 10 };
    },
    listen(channel: string, onNotify: () => void) {
      return listenOn(options.connectionString, channel, onNotify);
    },
    async close() {
      await pool.end();
    },
  };
}
