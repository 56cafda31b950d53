// Database on a Postgres server through a pg connection pool.
import pg from 'pg';
import type { Database, Listener, QueryResult, Queryable, SqlParam } from './database.js';
import { DatabaseUnavailableError, isConnectionFailure } from './unavailable.js';

export interface PostgresOptions {
  connectionString: string;
  /** Largest number of pooled connections. */
  max?: number;
}

/**
 * How long opening a connection may take before the server counts as unreachable: a request
 * during an outage gets its 503 within this, never hangs on a server that does not answer.
 */
const CONNECT_TIMEOUT_MS = 3_000;

/** Runs `query`, turning a failure to reach the server into DatabaseUnavailableError. */
async function reaching<T>(query: () => Promise<T>): Promise<T> {
  try {
    return await query();
  } catch (error) {
    throw isConnectionFailure(error) ? new DatabaseUnavailableError(error) : error;
  }
}

function wrap(client: pg.Pool | pg.PoolClient): Queryable {
  return {
    async query<Row>(text: string, params?: readonly SqlParam[]): Promise<QueryResult<Row>> {
      const result = await reaching(() => client.query(text, params as unknown[] | undefined));
      return { rows: result.rows as Row[], rowCount: result.rowCount ?? result.rows.length };
    },
    async exec(script: string): Promise<void> {
      // Without parameters pg uses the simple query protocol, which accepts several statements.
      await reaching(() => client.query(script));
    },
  };
}

/** How long a LISTEN connection that dropped first waits before it connects again; each failed try doubles it, up to the cap. */
const RELISTEN_FIRST_MS = 250;
const RELISTEN_MAX_MS = 10_000;

/**
 * LISTEN on a connection of its own (a pooled one would be handed to other queries),
 * opened again with backoff whenever it drops or could not be opened; `onNotify()` without
 * a payload when it drops and again once it is back says that notifications may have been
 * missed.
 */
async function listenOn(connectionString: string, channel: string, onNotify: (payload?: string) => void): Promise<Listener> {
  let client: pg.Client | undefined;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;
  let delay = RELISTEN_FIRST_MS;
  const reconnect = (): void => {
    if (stopped) return;
    // Jittered, so that replicas do not all come back in the same instant.
    retry = setTimeout(() => {
      connect().then(() => {
        delay = RELISTEN_FIRST_MS;
        onNotify();
      }, reconnect);
    }, delay * (0.75 + Math.random() / 2));
    retry.unref();
    delay = Math.min(delay * 2, RELISTEN_MAX_MS);
  };
  const connect = async (): Promise<void> => {
    const next = new pg.Client({ connectionString, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, keepAlive: true });
    next.on('notification', (message) => {
      if (message.channel === channel) onNotify(message.payload ?? '');
    });
    next.on('error', () => {});
    next.on('end', () => {
      if (stopped || client !== next) return;
      client = undefined;
      onNotify();
      reconnect();
    });
    try {
      await next.connect();
      await next.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
    } catch (error) {
      await next.end().catch(() => {});
      throw error;
    }
    client = next;
    if (stopped) await next.end();
  };
  // Not reachable now (a replica started during an outage): it keeps trying in the background.
  await connect().catch(reconnect);
  return {
    connected: () => client !== undefined,
    async close() {
      stopped = true;
      clearTimeout(retry);
      await client?.end();
    },
  };
}

export function createPostgresDatabase(options: PostgresOptions): Database {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max ?? 10,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
  });
  // An idle client losing its server must not crash the process; the next query reconnects.
  pool.on('error', () => {});
  const poolQueryable = wrap(pool);
  return {
    kind: 'postgres',
    query: poolQueryable.query,
    exec: poolQueryable.exec,
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      const client = await reaching(() => pool.connect());
      let failed: Error | undefined;
      try {
        await reaching(() => client.query('BEGIN'));
        const result = await fn(wrap(client));
        await reaching(() => client.query('COMMIT'));
        return result;
      } catch (error) {
        if (error instanceof DatabaseUnavailableError) failed = error;
        else await client.query('ROLLBACK').catch(() => {});
        throw error;
      } finally {
        // A connection that failed is not handed out again.
        client.release(failed);
      }
    },
    poolStats() {
      return { total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount, max: options.max ?? 10 };
    },
    listen(channel: string, onNotify: (payload?: string) => void) {
      return listenOn(options.connectionString, channel, onNotify);
    },
    async close() {
      await pool.end();
    },
  };
}
