// Webhooks: per-request subscriptions (the `webhook` field of runs and captioning jobs),
// tenant endpoints, signing secrets, and the messages sent with their attempts.
import { Type, type Static } from 'typebox';
import { EVENT_TYPE_NAMES, PING_EVENT, WEBHOOK_EVENT_TYPES, defaultEvents, eventsOf, type WebhookEventType } from '../webhooks/event-types.js';
import { Page, PaginationQuery, ResourceId, Timestamp } from './common.js';

export const WEBHOOK_ENDPOINT_ID_PREFIX = 'whep';
export const WEBHOOK_MESSAGE_ID_PREFIX = 'msg';
export const WEBHOOK_MESSAGE_STATUSES = ['pending', 'sending', 'succeeded', 'failed'] as const;

const EVENT_LIST = EVENT_TYPE_NAMES.map((name) => `\`${name}\` (${WEBHOOK_EVENT_TYPES[name].description})`).join('; ');

const Url = Type.String({
  minLength: 1,
  maxLength: 2048,
  description: 'Where to POST: https (http only when the server sets WEBHOOK_ALLOW_HTTP); never a private, loopback or link-local address',
  examples: ['https://example.com/webhooks/sdxl'],
});

function EventList(names: readonly string[], defaults: readonly string[], what: string) {
  return Type.Array(Type.Enum([...names]), {
    minItems: 1,
    uniqueItems: true,
    description: `${what}; default: ${defaults.join(', ')}`,
  });
}

/** The `webhook` field of a create request of `resource`: where its events go and which. */
export function WebhookSubscription(resource: WebhookEventType['resource']) {
  return Type.Object(
    {
      url: Url,
      events: Type.Optional(EventList(eventsOf(resource), defaultEvents(resource), 'The events to send')),
    },
    {
      additionalProperties: false,
      description: 'Sends this resource\'s events to `url`, signed with the tenant\'s secret (GET /v1/webhook-secret) as Standard Webhooks specifies',
    },
  );
}

/** How a subscription reads back on its resource. */
export const WebhookSubscriptionView = Type.Union(
  [Type.Object({ url: Type.String(), events: Type.Array(Type.String()) }, { additionalProperties: false }), Type.Null()],
  { description: 'Where this resource\'s events are sent, when a webhook was given' },
);
export type WebhookSubscriptionView = Static<typeof WebhookSubscriptionView>;

export const WebhookEndpointId = ResourceId(WEBHOOK_ENDPOINT_ID_PREFIX, 'Webhook endpoint id');
export const WebhookMessageId = ResourceId(WEBHOOK_MESSAGE_ID_PREFIX, 'Webhook message id: the webhook-id header of its every attempt');

export const WebhookEndpointSchema = Type.Object(
  {
    id: WebhookEndpointId,
    url: Type.String(),
    description: Type.String(),
    events: Type.Array(Type.String(), { description: `The event types sent here. All types: ${EVENT_LIST}` }),
    enabled: Type.Boolean(),
    disabled_reason: Type.Union([Type.Enum(['gone', 'failing']), Type.Null()], {
      description: 'Why the service disabled it: gone (it answered 410), failing (every attempt failed for WEBHOOK_DISABLE_AFTER_MS, 5 days by default); null otherwise. PATCH enabled: true to resume',
    }),
    failing_since: Type.Union([Timestamp, Type.Null()], { description: 'The first failed attempt since the last success' }),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'WebhookEndpoint', additionalProperties: false, description: 'A URL that receives this tenant\'s events, signed with its own secret' },
);
export type WebhookEndpoint = Static<typeof WebhookEndpointSchema>;
export const WebhookEndpointRef = Type.Ref('WebhookEndpoint');

export const CreateWebhookEndpointBody = Type.Object(
  {
    url: Url,
    events: Type.Optional(EventList(EVENT_TYPE_NAMES, defaultEvents(), 'The events to send')),
    description: Type.Optional(Type.String({ maxLength: 500 })),
    enabled: Type.Optional(Type.Boolean({ default: true })),
  },
  { additionalProperties: false },
);
export type CreateWebhookEndpointBody = Static<typeof CreateWebhookEndpointBody>;

export const UpdateWebhookEndpointBody = Type.Object(
  {
    url: Type.Optional(Url),
    events: Type.Optional(EventList(EVENT_TYPE_NAMES, defaultEvents(), 'The events to send')),
    description: Type.Optional(Type.String({ maxLength: 500 })),
    enabled: Type.Optional(Type.Boolean({ description: 'true also clears disabled_reason and the failure streak' })),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type UpdateWebhookEndpointBody = Static<typeof UpdateWebhookEndpointBody>;

export const WebhookEndpointParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 100, description: 'Webhook endpoint id' }) },
  { additionalProperties: false },
);
export const WebhookEndpointPage = Page(WebhookEndpointRef, 'A page of webhook endpoints, newest first');

export const WebhookSecretSchema = Type.Object(
  {
    secret: Type.String({ pattern: '^whsec_', description: 'whsec_ and the base64 of 32 random bytes; verify with any Standard Webhooks library' }),
    previous_secret_expires_at: Type.Union([Timestamp, Type.Null()], {
      description: 'After a rotation the previous secret signs too (a second signature) until then',
    }),
  },
  { $id: 'WebhookSecret', additionalProperties: false },
);
export type WebhookSecret = Static<typeof WebhookSecretSchema>;
export const WebhookSecretRef = Type.Ref('WebhookSecret');

export const WebhookAttemptSchema = Type.Object(
  {
    started_at: Timestamp,
    url: Type.String(),
    status_code: Type.Union([Type.Integer(), Type.Null()], { description: 'The receiver\'s answer; null when none came' }),
    latency_ms: Type.Union([Type.Integer(), Type.Null()]),
    response_body: Type.Union([Type.String(), Type.Null()], { description: 'The first 1 KiB of the answer' }),
    error: Type.Union([Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: false }), Type.Null()], {
      description: 'Why the attempt failed: http_status, timeout, connection_failed, dns_failed, forbidden_address, url_refused, gone, endpoint_disabled, endpoint_deleted',
    }),
    next_attempt_at: Type.Union([Timestamp, Type.Null()], { description: 'When the next attempt was scheduled; null when this one settled the message' }),
  },
  { additionalProperties: false },
);

const messageProperties = {
  id: WebhookMessageId,
  event_type: Type.String({ description: `One of: ${[...EVENT_TYPE_NAMES, PING_EVENT].join(', ')}` }),
  resource_type: Type.String(),
  resource_id: Type.String(),
  endpoint_id: Type.Union([Type.String(), Type.Null()], { description: 'The endpoint it goes to; null for a per-request webhook' }),
  url: Type.Union([Type.String(), Type.Null()], { description: 'Where a per-request webhook goes (an endpoint\'s message goes to its current url)' }),
  status: Type.Enum([...WEBHOOK_MESSAGE_STATUSES], {
    description: 'pending (waiting for its next attempt), sending, succeeded (a 2xx), failed (out of attempts, 410, or refused)',
  }),
  attempt_count: Type.Integer({ minimum: 0, description: 'Attempts since it was created or redelivered (at most 8)' }),
  next_attempt_at: Type.Union([Timestamp, Type.Null()]),
  last_error: Type.Union([Type.String(), Type.Null()]),
  payload: Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()], {
    description: 'The body as sent ({type, timestamp, data}); null before the first attempt',
  }),
  created_at: Timestamp,
  completed_at: Type.Union([Timestamp, Type.Null()]),
};

export const WebhookMessageSchema = Type.Object(messageProperties, { $id: 'WebhookMessage', additionalProperties: false });
export type WebhookMessage = Static<typeof WebhookMessageSchema>;
export const WebhookMessageRef = Type.Ref('WebhookMessage');

export const WebhookMessageWithAttempts = Type.Object(
  { ...messageProperties, attempts: Type.Array(WebhookAttemptSchema, { description: 'Every attempt, oldest first' }) },
  { additionalProperties: false },
);
export type WebhookMessageWithAttempts = Static<typeof WebhookMessageWithAttempts>;

export const WebhookMessageParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 100, description: 'Webhook message id' }) },
  { additionalProperties: false },
);
export const ListWebhookMessagesQuery = Type.Object(
  {
    ...PaginationQuery.properties,
    resource_id: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'Only messages about this run or job' })),
    endpoint_id: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'Only messages to this endpoint' })),
    status: Type.Optional(Type.Enum([...WEBHOOK_MESSAGE_STATUSES])),
  },
  { additionalProperties: false },
);
export const WebhookMessagePage = Page(WebhookMessageRef, 'A page of webhook messages, newest first');
