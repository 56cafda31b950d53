// The database cannot be reached (stopped, restarting, failing over, cut off): not a fault of
// the statement. The Postgres layer turns such failures into DatabaseUnavailableError, so the
// API answers 503 with Retry-After rather than 500, and a worker holds a write until the
// database is back rather than dropping it.

export class DatabaseUnavailableError extends Error {
  override name = 'DatabaseUnavailableError';

  constructor(cause: unknown) {
    super(`The database is unavailable: ${(cause as Error)?.message ?? String(cause)}`, { cause });
  }
}

/** Socket errors of a connection that could not be made or was lost. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'ENOTFOUND', 'EAI_AGAIN',
]);

/**
 * SQLSTATEs of a server that is going away or not taking connections, besides class 08
 * (connection exception): 57P01-57P03 (admin or crash shutdown, cannot connect now) and
 * 53300 (too many connections).
 */
const SERVER_CODES = new Set(['57P01', '57P02', '57P03', '53300']);

/** Messages node-postgres gives its own connection failures, which carry no code. */
const PG_MESSAGES = [
  /^Connection terminated/,
  /timeout exceeded when trying to connect/,
  /Client has encountered a connection error and is not queryable/,
  /Client was closed and is not queryable/,
];

/** Whether `error` says the database could not be reached, rather than that a statement failed. */
export function isConnectionFailure(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (SOCKET_CODES.has(code) || SERVER_CODES.has(code) || code.startsWith('08')) return true;
  }
  // Node's happy-eyeballs connect rejects with an AggregateError of each address's failure.
  if (error instanceof AggregateError && error.errors.some(isConnectionFailure)) return true;
  return PG_MESSAGES.some((pattern) => pattern.test(error.message));
}

/** Whether `error`, or an error it was caused by, is a DatabaseUnavailableError. */
export function isDatabaseUnavailable(error: unknown): boolean {
  for (let e = error, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    if (e instanceof DatabaseUnavailableError) return true;
  }
  return false;
}

/** How long a worker retries a write while the database is unavailable: longer than any restart or failover, shorter than a grace period that never ends. */
export const WRITE_RETRY_FOR_MS = 5 * 60_000;
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 5_000;

/**
 * Runs `write` until it is made, retrying with backoff while the database is unavailable (a
 * worker's progress, events and results land once it is back, in their order); any other
 * failure, or the database still away after `forMs`, is thrown. `onWait` hears each failure
 * that will be retried.
 */
export async function retryWhileUnavailable<T>(write: () => Promise<T>, onWait?: (error: unknown) => void, forMs = WRITE_RETRY_FOR_MS): Promise<T> {
  const deadline = Date.now() + forMs;
  for (let delay = RETRY_FIRST_MS; ; delay = Math.min(delay * 2, RETRY_MAX_MS)) {
    try {
      return await write();
    } catch (error) {
      if (!isDatabaseUnavailable(error) || Date.now() + delay > deadline) throw error;
      onWait?.(error);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
