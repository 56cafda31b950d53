// SQL of a tenant's webhook endpoints (migration 008).
import type { Queryable } from '../db/database.js';

export interface WebhookEndpointRow {
  id: string;
  tenant_id: string;
  url: string;
  description: string;
  events: string[];
  enabled: boolean;
  disabled_reason: string | null;
  failing_since: Date | null;
  created_at: Date;
  updated_at: Date;
}

export interface WebhookEndpointChanges {
  url?: string;
  description?: string;
  events?: string[];
  enabled?: boolean;
}

const COLUMNS = 'id, tenant_id, url, description, events, enabled, disabled_reason, failing_since, created_at, updated_at';

export function createWebhookEndpointsRepository(db: Queryable) {
  return {
    async insert(row: { id: string; tenantId: string; url: string; description: string; events: string[]; enabled: boolean }): Promise<WebhookEndpointRow> {
      const { rows } = await db.query<WebhookEndpointRow>(
        `INSERT INTO webhook_endpoints (id, tenant_id, url, description, events, enabled) VALUES ($1, $2, $3, $4, $5, $6) RETURNING ${COLUMNS}`,
        [row.id, row.tenantId, row.url, row.description, row.events, row.enabled],
      );
      return rows[0]!;
    },

    async find(tenantId: string, id: string): Promise<WebhookEndpointRow | null> {
      const { rows } = await db.query<WebhookEndpointRow>(`SELECT ${COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2`, [tenantId, id]);
      return rows[0] ?? null;
    },

    /** Newest first, after the cursor id when given. */
    async list(tenantId: string, limit: number, before?: string): Promise<WebhookEndpointRow[]> {
      const { rows } = await db.query<WebhookEndpointRow>(
        `SELECT ${COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND ($2::text IS NULL OR id < $2) ORDER BY id DESC LIMIT $3`,
        [tenantId, before ?? null, limit],
      );
      return rows;
    },

    /** Applies the changes given; enabling clears why it was disabled and its failure streak. */
    async update(tenantId: string, id: string, changes: WebhookEndpointChanges): Promise<WebhookEndpointRow | null> {
      const { rows } = await db.query<WebhookEndpointRow>(
        `UPDATE webhook_endpoints
            SET url = coalesce($3, url), description = coalesce($4, description), events = coalesce($5, events),
                enabled = coalesce($6, enabled),
                disabled_reason = CASE WHEN $6::boolean IS NULL THEN disabled_reason ELSE NULL END,
                failing_since = CASE WHEN $6::boolean THEN NULL ELSE failing_since END,
                updated_at = now()
          WHERE tenant_id = $1 AND id = $2
          RETURNING ${COLUMNS}`,
        [tenantId, id, changes.url ?? null, changes.description ?? null, changes.events ?? null, changes.enabled ?? null],
      );
      return rows[0] ?? null;
    },

    async remove(tenantId: string, id: string): Promise<boolean> {
      const { rowCount } = await db.query('DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2', [tenantId, id]);
      return rowCount > 0;
    },

    // ---------------------------------------------------------------- dispatcher side

    async findById(id: string): Promise<WebhookEndpointRow | null> {
      const { rows } = await db.query<WebhookEndpointRow>(`SELECT ${COLUMNS} FROM webhook_endpoints WHERE id = $1`, [id]);
      return rows[0] ?? null;
    },

    /** An attempt got a 2xx: the failure streak ends. */
    async succeeded(id: string): Promise<void> {
      await db.query('UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL', [id]);
    },

    /**
     * An attempt failed at `at`: starts the failure streak, or, when it began more than
     * `disableAfterMs` before, disables the endpoint ('failing'). Whether it is disabled now.
     */
    async failed(id: string, at: Date, disableAfterMs: number): Promise<boolean> {
      const { rows } = await db.query<{ enabled: boolean }>(
        `UPDATE webhook_endpoints
            SET failing_since = coalesce(failing_since, $2),
                enabled = enabled AND NOT (failing_since IS NOT NULL AND failing_since < $2::timestamptz - ($3::bigint * interval '1 millisecond')),
                disabled_reason = CASE WHEN enabled AND failing_since IS NOT NULL
                                        AND failing_since < $2::timestamptz - ($3::bigint * interval '1 millisecond')
                                       THEN 'failing' ELSE disabled_reason END,
                updated_at = now()
          WHERE id = $1
          RETURNING enabled`,
        [id, at, disableAfterMs],
      );
      return rows[0]?.enabled === false;
    },

    /** The receiver said 410 Gone: nothing more is sent to it. */
    async gone(id: string): Promise<void> {
      await db.query(`UPDATE webhook_endpoints SET enabled = false, disabled_reason = 'gone', updated_at = now() WHERE id = $1`, [id]);
    },
  };
}
