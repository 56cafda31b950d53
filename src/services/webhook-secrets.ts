// Signing secrets as the API shows them: the tenant's (for per-request webhooks) and each
// endpoint's, read and rotated. A rotation keeps the previous secret signing, next to the
// new one, for WEBHOOK_ROTATION_OVERLAP_MS (24 h), so receivers can switch without a gap.
import type { Queryable } from '../db/database.js';
import { createWebhookSecretsRepository, type WebhookSecretRow } from '../repositories/webhook-secrets.js';
import type { WebhookSecret } from '../schemas/webhooks.js';

export const WEBHOOK_ROTATION_OVERLAP_MS = 24 * 3_600_000;

export function toWebhookSecret(row: WebhookSecretRow, now = new Date()): WebhookSecret {
  const overlapping = row.previous_expires_at !== null && row.previous_expires_at > now;
  return { secret: row.secret, previous_secret_expires_at: overlapping ? row.previous_expires_at!.toISOString() : null };
}

/** `ownerId` is the tenant's id for its own secret, or one of its endpoints' ids (checked by the caller). */
export class WebhookSecretsService {
  constructor(private readonly db: Queryable, private readonly overlapMs = WEBHOOK_ROTATION_OVERLAP_MS) {}

  async get(tenantId: string, ownerId: string): Promise<WebhookSecret> {
    return toWebhookSecret(await createWebhookSecretsRepository(this.db).getOrCreate(tenantId, ownerId));
  }

  async rotate(tenantId: string, ownerId: string): Promise<WebhookSecret> {
    return toWebhookSecret(await createWebhookSecretsRepository(this.db).rotate(tenantId, ownerId, this.overlapMs));
  }
}
