// SQL of webhook messages and their attempts (migration 008). Messages of resource events
// are inserted by triggers; this file claims the due ones for a dispatcher (FOR UPDATE SKIP
// LOCKED under a lease, as every job kind: src/repositories/lease-sql.ts), records each attempt with
// the message's next state in one transaction, and reads them for the API.
import type { Queryable } from '../db/database.js';
import { leaseInterval, renewLease } from './lease-sql.js';

export type WebhookMessageStatus = 'pending' | 'sending' | 'succeeded' | 'failed';

export interface WebhookMessageRow {
  id: string;
  tenant_id: string;
  endpoint_id: string | null;
  url: string | null;
  event_type: string;
  resource_type: string;
  resource_id: string;
  snapshot: Record<string, unknown>;
  payload: string | null;
  status: WebhookMessageStatus;
  attempts: number;
  next_attempt_at: Date;
  last_error: string | null;
  created_at: Date;
  completed_at: Date | null;
}

export interface WebhookAttemptRow {
  id: string;
  message_id: string;
  url: string;
  started_at: Date;
  status_code: number | null;
  latency_ms: number | null;
  response_body: string | null;
  error_code: string | null;
  error_message: string | null;
  next_attempt_at: Date | null;
}

/** What one attempt found, and what becomes of the message. */
export interface AttemptOutcome {
  url: string;
  startedAt: Date;
  statusCode: number | null;
  latencyMs: number | null;
  responseBody: string | null;
  errorCode: string | null;
  errorMessage: string | null;
  /** The body sent (stored on the first attempt, so every retry sends the same bytes). */
  payload: string | null;
  /** succeeded, failed (no more attempts), or pending again at nextAttemptAt. */
  status: 'succeeded' | 'failed' | 'pending';
  nextAttemptAt: Date | null;
}

const COLUMNS =
  'id, tenant_id, endpoint_id, url, event_type, resource_type, resource_id, snapshot, payload, status, attempts, ' +
  'next_attempt_at, last_error, created_at, completed_at';
const ATTEMPT_COLUMNS = 'id::text, message_id, url, started_at, status_code, latency_ms, response_body, error_code, error_message, next_attempt_at';
const HELD = ['sending'] as const;

export interface MessageFilter {
  resource_id?: string;
  status?: WebhookMessageStatus;
  endpoint_id?: string;
}

export function createWebhookMessagesRepository(db: Queryable) {
  return {
    async insert(row: { id: string; tenantId: string; endpointId: string; eventType: string; resourceType: string; resourceId: string; snapshot: unknown }): Promise<WebhookMessageRow> {
      const { rows } = await db.query<WebhookMessageRow>(
        `INSERT INTO webhook_messages (id, tenant_id, endpoint_id, event_type, resource_type, resource_id, snapshot)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${COLUMNS}`,
        [row.id, row.tenantId, row.endpointId, row.eventType, row.resourceType, row.resourceId, JSON.stringify(row.snapshot)],
      );
      return rows[0]!;
    },

    async find(tenantId: string, id: string): Promise<WebhookMessageRow | null> {
      const { rows } = await db.query<WebhookMessageRow>(`SELECT ${COLUMNS} FROM webhook_messages WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
      return rows[0] ?? null;
    },

    /** Newest first, after the cursor id when given. */
    async list(tenantId: string, filter: MessageFilter, limit: number, before?: string): Promise<WebhookMessageRow[]> {
      const { rows } = await db.query<WebhookMessageRow>(
        `SELECT ${COLUMNS} FROM webhook_messages
          WHERE tenant_id = $1 AND ($2::text IS NULL OR resource_id = $2) AND ($3::text IS NULL OR status = $3)
            AND ($4::text IS NULL OR endpoint_id = $4) AND ($5::text IS NULL OR id < $5)
          ORDER BY id DESC LIMIT $6`,
        [tenantId, filter.resource_id ?? null, filter.status ?? null, filter.endpoint_id ?? null, before ?? null, limit],
      );
      return rows;
    },

    async attempts(messageId: string): Promise<WebhookAttemptRow[]> {
      const { rows } = await db.query<WebhookAttemptRow>(`SELECT ${ATTEMPT_COLUMNS} FROM webhook_attempts WHERE message_id = $1 ORDER BY webhook_attempts.id`, [messageId]);
      return rows;
    },

    /** Sends a finished message again, at once and with a fresh retry schedule; null when it is still pending or sending. */
    async redeliver(tenantId: string, id: string): Promise<WebhookMessageRow | null> {
      const { rows } = await db.query<WebhookMessageRow>(
        `UPDATE webhook_messages
            SET status = 'pending', attempts = 0, next_attempt_at = now(), completed_at = NULL, last_error = NULL
          WHERE tenant_id = $1 AND id = $2 AND status IN ('succeeded', 'failed')
          RETURNING ${COLUMNS}`,
        [tenantId, id],
      );
      return rows[0] ?? null;
    },

    // ---------------------------------------------------------------- dispatcher side

    /**
     * Takes the message due longest ago at `now` (the dispatcher's clock), or one whose
     * sender died (lease expired), for `owner` until the lease ends.
     */
    async claimNext(owner: string, leaseMs: number, now: Date): Promise<WebhookMessageRow | null> {
      const { rows } = await db.query<WebhookMessageRow>(
        `UPDATE webhook_messages
            SET status = 'sending', lease_owner = $1, lease_expires_at = now() + ${leaseInterval(2)}, heartbeat_at = now()
          WHERE id = (SELECT id FROM webhook_messages
                       WHERE (status = 'pending' AND next_attempt_at <= $3)
                          OR (status = 'sending' AND lease_expires_at < now())
                       ORDER BY next_attempt_at, id
                       LIMIT 1
                       FOR UPDATE SKIP LOCKED)
          RETURNING ${COLUMNS}`,
        [owner, leaseMs, now],
      );
      return rows[0] ?? null;
    },

    heartbeat(id: string, owner: string, leaseMs: number): Promise<{ cancelRequested: boolean } | null> {
      return renewLease(db, 'webhook_messages', HELD, id, owner, leaseMs);
    },

    /** Gives a message back untried (this process is shutting down). */
    async release(id: string, owner: string): Promise<void> {
      await db.query(
        `UPDATE webhook_messages SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL
          WHERE id = $1 AND lease_owner = $2 AND status = 'sending'`,
        [id, owner],
      );
    },
  };
}

/**
 * Records an attempt and the message's next state in one statement (so together, and in one
 * round trip); false when the lease was lost (another sender took the message).
 */
export async function recordAttempt(db: Queryable, id: string, owner: string, outcome: AttemptOutcome): Promise<boolean> {
  const { rowCount } = await db.query(
    `WITH settled AS (
       UPDATE webhook_messages
          SET status = $3::text, attempts = attempts + 1, payload = coalesce(payload, $4::text), next_attempt_at = coalesce($5::timestamptz, next_attempt_at),
              last_error = $6::text, completed_at = CASE WHEN $3::text = 'pending' THEN NULL ELSE now() END,
              lease_owner = NULL, lease_expires_at = NULL
        WHERE id = $1 AND lease_owner = $2 AND status = 'sending'
        RETURNING id)
     INSERT INTO webhook_attempts (message_id, url, started_at, status_code, latency_ms, response_body, error_code, error_message, next_attempt_at)
     SELECT id, $7::text, $8::timestamptz, $9::integer, $10::integer, $11::text, $12::text, $13::text, $5::timestamptz FROM settled`,
    [
      id, owner, outcome.status, outcome.payload, outcome.nextAttemptAt,
      outcome.status === 'succeeded' ? null : outcome.errorMessage ?? `HTTP ${outcome.statusCode}`,
      outcome.url, outcome.startedAt, outcome.statusCode, outcome.latencyMs, outcome.responseBody, outcome.errorCode, outcome.errorMessage,
    ],
  );
  return rowCount > 0;
}
