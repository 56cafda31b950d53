// SQL of Idempotency-Key records (migrations/006_idempotency_keys.sql). A key is claimed in
// one statement, so two requests with the same key, on one replica or on several sharing
// the database, never both run; storing and deleting are scoped by the claim's token.
import type { Queryable } from '../db/database.js';

export interface IdempotencyKeyRow {
  fingerprint: string;
  claim_token: string;
  /** null while the claiming request is in flight. */
  response_status: number | null;
  response_headers: Record<string, string> | null;
  response_body: string | null;
  created_at: Date;
  completed_at: Date | null;
}

export interface StoredResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export interface ClaimLifetimes {
  /** An in-flight claim older than this is abandoned (its process died) and may be taken over. */
  inFlightMs: number;
  /** A stored response older than this is replaced by a new request. */
  storedMs: number;
}

/** `$n` milliseconds as an interval. */
const interval = (param: number): string => `($${param}::integer * interval '1 millisecond')`;

const COLUMNS = 'fingerprint, claim_token, response_status, response_headers, response_body, created_at, completed_at';

export function createIdempotencyKeysRepository(db: Queryable) {
  return {
    /**
     * Claims (tenant, key) for a request with `fingerprint` under `token`: inserts the row, or
     * takes over one that is abandoned or expired. True when this call now holds the claim;
     * false when a live row is there (read it with find). Concurrent claims on one row queue
     * on its lock, and the later one re-checks the row the earlier one left, so only one wins.
     */
    async claim(tenantId: string, key: string, fingerprint: string, token: string, lifetimes: ClaimLifetimes): Promise<boolean> {
      const { rows } = await db.query<{ claim_token: string }>(
        `INSERT INTO idempotency_keys (tenant_id, key, fingerprint, claim_token)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id, key) DO UPDATE
            SET fingerprint = EXCLUDED.fingerprint, claim_token = EXCLUDED.claim_token, created_at = now(),
                response_status = NULL, response_headers = NULL, response_body = NULL, completed_at = NULL
          WHERE (idempotency_keys.completed_at IS NULL AND idempotency_keys.created_at < now() - ${interval(5)})
             OR (idempotency_keys.completed_at IS NOT NULL AND idempotency_keys.created_at < now() - ${interval(6)})
         RETURNING claim_token`,
        [tenantId, key, fingerprint, token, lifetimes.inFlightMs, lifetimes.storedMs],
      );
      return rows[0]?.claim_token === token;
    },

    async find(tenantId: string, key: string): Promise<IdempotencyKeyRow | null> {
      const { rows } = await db.query<IdempotencyKeyRow>(
        `SELECT ${COLUMNS} FROM idempotency_keys WHERE tenant_id = $1 AND key = $2`,
        [tenantId, key],
      );
      return rows[0] ?? null;
    },

    /** Stores the claiming request's answer; false when the claim was lost (taken over). */
    async complete(tenantId: string, key: string, token: string, response: StoredResponse): Promise<boolean> {
      const { rowCount } = await db.query(
        `UPDATE idempotency_keys
            SET response_status = $4, response_headers = $5, response_body = $6, completed_at = now()
          WHERE tenant_id = $1 AND key = $2 AND claim_token = $3 AND completed_at IS NULL`,
        [tenantId, key, token, response.status, JSON.stringify(response.headers), response.body],
      );
      return rowCount > 0;
    },

    /** Deletes the claim, so the key may be used again at once; false when it was no longer held. */
    async release(tenantId: string, key: string, token: string): Promise<boolean> {
      const { rowCount } = await db.query(
        'DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND claim_token = $3 AND completed_at IS NULL',
        [tenantId, key, token],
      );
      return rowCount > 0;
    },
  };
}

export type IdempotencyKeysRepository = ReturnType<typeof createIdempotencyKeysRepository>;
