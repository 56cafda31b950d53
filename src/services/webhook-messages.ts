// The webhook messages of a tenant as the API shows them: pages (by resource, endpoint,
// status), one with every attempt, and a redelivery.
import type { Database } from '../db/database.js';
import { idPattern } from '../db/ids.js';
import { notFound, ProblemError } from '../errors.js';
import {
  createWebhookMessagesRepository,
  type MessageFilter,
  type WebhookAttemptRow,
  type WebhookMessageRow,
} from '../repositories/webhook-messages.js';
import { WEBHOOK_MESSAGE_ID_PREFIX, type WebhookMessage, type WebhookMessageWithAttempts } from '../schemas/webhooks.js';
import { decodeCursor, toPage } from './pagination.js';

const MESSAGE_ID = new RegExp(idPattern(WEBHOOK_MESSAGE_ID_PREFIX));

export function toWebhookMessage(row: WebhookMessageRow): WebhookMessage {
  const open = row.status === 'pending' || row.status === 'sending';
  return {
    id: row.id,
    event_type: row.event_type,
    resource_type: row.resource_type,
    resource_id: row.resource_id,
    endpoint_id: row.endpoint_id,
    url: row.url,
    status: row.status,
    attempt_count: row.attempts,
    next_attempt_at: open ? row.next_attempt_at.toISOString() : null,
    last_error: row.last_error,
    payload: row.payload === null ? null : (JSON.parse(row.payload) as Record<string, unknown>),
    created_at: row.created_at.toISOString(),
    completed_at: row.completed_at?.toISOString() ?? null,
  };
}

function toAttempt(row: WebhookAttemptRow) {
  return {
    started_at: row.started_at.toISOString(),
    url: row.url,
    status_code: row.status_code,
    latency_ms: row.latency_ms,
    response_body: row.response_body,
    error: row.error_code === null ? null : { code: row.error_code, message: row.error_message ?? '' },
    next_attempt_at: row.next_attempt_at?.toISOString() ?? null,
  };
}

export class WebhookMessagesService {
  constructor(private readonly db: Database) {}

  async list(tenantId: string, filter: MessageFilter, limit: number, cursor?: string) {
    const before = cursor === undefined ? undefined : decodeCursor(cursor, MESSAGE_ID);
    const rows = await createWebhookMessagesRepository(this.db).list(tenantId, filter, limit + 1, before);
    return toPage(rows, limit, toWebhookMessage);
  }

  async get(tenantId: string, id: string): Promise<WebhookMessageWithAttempts> {
    const messages = createWebhookMessagesRepository(this.db);
    const row = await messages.find(tenantId, id);
    if (row === null) throw notFound('webhook message', id);
    return { ...toWebhookMessage(row), attempts: (await messages.attempts(id)).map(toAttempt) };
  }

  /** Sends a succeeded or failed message again, now, with a fresh retry schedule; 409 while it is still on its way. */
  async redeliver(tenantId: string, id: string): Promise<WebhookMessage> {
    const messages = createWebhookMessagesRepository(this.db);
    const row = await messages.redeliver(tenantId, id);
    if (row === null) {
      const existing = await messages.find(tenantId, id);
      if (existing === null) throw notFound('webhook message', id);
      throw new ProblemError({
        status: 409,
        type: 'webhook-message-in-flight',
        title: 'Message still being delivered',
        detail: `webhook message ${id} is ${existing.status}: it will be attempted again at ${existing.next_attempt_at.toISOString()}; redeliver it once it has succeeded or failed`,
      });
    }
    return toWebhookMessage(row);
  }
}
