// SQL of webhook signing secrets (migration 008): one per tenant (its per-request webhooks)
// and one per endpoint, made on first use; a rotation keeps the previous one signing for an
// overlap.
import type { Queryable } from '../db/database.js';
import { newWebhookSecret } from '../webhooks/signing.js';

export interface WebhookSecretRow {
  owner_id: string;
  secret: string;
  previous_secret: string | null;
  previous_expires_at: Date | null;
  created_at: Date;
  rotated_at: Date | null;
}

const COLUMNS = 'owner_id, secret, previous_secret, previous_expires_at, created_at, rotated_at';

export function createWebhookSecretsRepository(db: Queryable) {
  return {
    /** The owner's secret, made now if it has none (a read alone once it exists: the dispatcher asks for every message). */
    async getOrCreate(tenantId: string, ownerId: string): Promise<WebhookSecretRow> {
      const select = () => db.query<WebhookSecretRow>(`SELECT ${COLUMNS} FROM webhook_secrets WHERE owner_id = $1`, [ownerId]);
      const found = (await select()).rows[0];
      if (found !== undefined) return found;
      await db.query(
        'INSERT INTO webhook_secrets (owner_id, tenant_id, secret) VALUES ($1, $2, $3) ON CONFLICT (owner_id) DO NOTHING',
        [ownerId, tenantId, newWebhookSecret()],
      );
      return (await select()).rows[0]!;
    },

    /** A new secret; the current one keeps signing for `overlapMs` more. */
    async rotate(tenantId: string, ownerId: string, overlapMs: number): Promise<WebhookSecretRow> {
      await this.getOrCreate(tenantId, ownerId);
      const { rows } = await db.query<WebhookSecretRow>(
        `UPDATE webhook_secrets
            SET previous_secret = secret, previous_expires_at = now() + ($3::integer * interval '1 millisecond'),
                secret = $2, rotated_at = now()
          WHERE owner_id = $1
          RETURNING ${COLUMNS}`,
        [ownerId, newWebhookSecret(), overlapMs],
      );
      return rows[0]!;
    },

    async remove(ownerId: string): Promise<void> {
      await db.query('DELETE FROM webhook_secrets WHERE owner_id = $1', [ownerId]);
    },
  };
}

/** The secrets that sign at `now`: the current one, and the previous one during its overlap. */
export function signingSecrets(row: WebhookSecretRow, now: Date): string[] {
  const previousLive = row.previous_secret !== null && row.previous_expires_at !== null && row.previous_expires_at > now;
  return previousLive ? [row.secret, row.previous_secret!] : [row.secret];
}
