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

export interface Database extends Queryable {
  /** 'postgres' for a server reached through DATABASE_URL, 'pglite' for the embedded one. */
  readonly kind: 'postgres' | 'pglite';
  /** Runs `fn` inside BEGIN/COMMIT on one connection; ROLLBACK when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Calls `onNotify` for each NOTIFY on `channel` (delivered after the notifying transaction
   * commits, from any process on the database). Best effort: a lost connection is re-opened,
   * and what it missed meanwhile must be found another way (callers also poll).
   */
  listen(channel: string, onNotify: () => void): Promise<() => Promise<void>>;
  /** Connections of the pool (PGlite has one, always open): for /metrics. */
  poolStats(): PoolStats;
  /** Waits for running queries, then releases every connection. */
  close(): Promise<void>;
}
