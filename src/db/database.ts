// The one data-layer contract: repositories and the migrator talk to this, and
// never know whether a pg Pool (DATABASE_URL) or embedded PGlite answers.

export type SqlParam = string | number | boolean | null | Date | Buffer | Uint8Array | readonly unknown[];

export interface QueryResult<Row> {
  rows: Row[];
  /** Rows returned or affected. */
  rowCount: number;
}

export interface PoolStats {
  /** Connections open, idle among them, and queries waiting for one. */
  total: number;
  idle: number;
  waiting: number;
  max: number;
}

/** Something that runs SQL: the database itself, or one transaction on it. */
export interface Queryable {
  query<Row = Record<string, unknown>>(text: string, params?: readonly SqlParam[]): Promise<QueryResult<Row>>;
  /** Runs a script of several statements without parameters (migrations). */
  exec(script: string): Promise<void>;
}

/** A LISTEN that `Database.listen` holds open. */
export interface Listener {
  /** Whether its connection is open now (notifications arrive). */
  connected(): boolean;
  /** Stops listening and closes its connection. */
  close(): Promise<void>;
}

export interface Database extends Queryable {
  /** 'postgres' for a server reached through DATABASE_URL, 'pglite' for the embedded one. */
  readonly kind: 'postgres' | 'pglite';
  /** Runs `fn` inside BEGIN/COMMIT on one connection; ROLLBACK when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Calls `onNotify(payload)` for each NOTIFY on `channel` (delivered after the notifying
   * transaction commits, from any process on the database). A connection that is lost, or
   * cannot be opened yet, is opened again with backoff; `onNotify()` without a payload, called
   * when the connection is lost and again once it is back, says that notifications may have
   * been missed: read what you watch again.
   */
  listen(channel: string, onNotify: (payload?: string) => void): Promise<Listener>;
  /** Connections of the pool (PGlite has one, always open): for /metrics. */
  poolStats(): PoolStats;
  /** Waits for running queries, then releases every connection. */
  close(): Promise<void>;
}
