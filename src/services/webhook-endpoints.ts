// A tenant's webhook endpoints: create (with its own secret), list, read, change, delete,
// and a ping to test one.
import type { Database } from '../db/database.js';
import { idPattern, newId } from '../db/ids.js';
import { notFound } from '../errors.js';
import { createWebhookEndpointsRepository, type WebhookEndpointRow } from '../repositories/webhook-endpoints.js';
import { createWebhookMessagesRepository } from '../repositories/webhook-messages.js';
import { createWebhookSecretsRepository } from '../repositories/webhook-secrets.js';
import {
  WEBHOOK_ENDPOINT_ID_PREFIX,
  WEBHOOK_MESSAGE_ID_PREFIX,
  type CreateWebhookEndpointBody,
  type UpdateWebhookEndpointBody,
  type WebhookEndpoint,
} from '../schemas/webhooks.js';
import type { AddressPolicy } from '../webhooks/address-policy.js';
import { defaultEvents, PING_EVENT } from '../webhooks/event-types.js';
import { decodeCursor, toPage } from './pagination.js';
import { checkWebhookUrl } from './webhook-urls.js';

const ENDPOINT_ID = new RegExp(idPattern(WEBHOOK_ENDPOINT_ID_PREFIX));

export function toWebhookEndpoint(row: WebhookEndpointRow): WebhookEndpoint {
  return {
    id: row.id,
    url: row.url,
    description: row.description,
    events: row.events,
    enabled: row.enabled,
    disabled_reason: row.disabled_reason as WebhookEndpoint['disabled_reason'],
    failing_since: row.failing_since?.toISOString() ?? null,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

export class WebhookEndpointsService {
  constructor(private readonly db: Database, private readonly policy: AddressPolicy) {}

  async create(tenantId: string, input: CreateWebhookEndpointBody): Promise<{ endpoint: WebhookEndpoint; secret: string }> {
    checkWebhookUrl(this.policy, input.url, 'url');
    return this.db.transaction(async (tx) => {
      const row = await createWebhookEndpointsRepository(tx).insert({
        id: newId(WEBHOOK_ENDPOINT_ID_PREFIX),
        tenantId,
        url: input.url,
        description: input.description ?? '',
        events: input.events ?? defaultEvents(),
        enabled: input.enabled ?? true,
      });
      const secret = await createWebhookSecretsRepository(tx).getOrCreate(tenantId, row.id);
      return { endpoint: toWebhookEndpoint(row), secret: secret.secret };
    });
  }

  /** The endpoint's row, or 404 (also for another tenant's). */
  async find(tenantId: string, id: string): Promise<WebhookEndpointRow> {
    const row = await createWebhookEndpointsRepository(this.db).find(tenantId, id);
    if (row === null) throw notFound('webhook endpoint', id);
    return row;
  }

  async get(tenantId: string, id: string): Promise<WebhookEndpoint> {
    return toWebhookEndpoint(await this.find(tenantId, id));
  }

  async list(tenantId: string, limit: number, cursor?: string) {
    const before = cursor === undefined ? undefined : decodeCursor(cursor, ENDPOINT_ID);
    const rows = await createWebhookEndpointsRepository(this.db).list(tenantId, limit + 1, before);
    return toPage(rows, limit, toWebhookEndpoint);
  }

  async update(tenantId: string, id: string, changes: UpdateWebhookEndpointBody): Promise<WebhookEndpoint> {
    if (changes.url !== undefined) checkWebhookUrl(this.policy, changes.url, 'url');
    const row = await createWebhookEndpointsRepository(this.db).update(tenantId, id, changes);
    if (row === null) throw notFound('webhook endpoint', id);
    return toWebhookEndpoint(row);
  }

  /** Deletes the endpoint, its secret and its messages. */
  async remove(tenantId: string, id: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      if (!(await createWebhookEndpointsRepository(tx).remove(tenantId, id))) throw notFound('webhook endpoint', id);
      await createWebhookSecretsRepository(tx).remove(id);
    });
  }

  /** Queues a `ping` to the endpoint; to a disabled one it fails at once (endpoint_disabled). */
  async ping(tenantId: string, id: string) {
    const endpoint = await this.find(tenantId, id);
    return createWebhookMessagesRepository(this.db).insert({
      id: newId(WEBHOOK_MESSAGE_ID_PREFIX),
      tenantId,
      endpointId: endpoint.id,
      eventType: PING_EVENT,
      resourceType: 'webhook_endpoint',
      resourceId: endpoint.id,
      snapshot: { endpoint_id: endpoint.id, message: 'ping from sdxl-lora-service' },
    });
  }
}
