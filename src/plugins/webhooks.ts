// Webhooks: the endpoints, messages and secrets services, the URL policy the create
// routes check `webhook` fields against, and this process's dispatcher (WEBHOOK_SLOTS
// messages at once; woken by the NOTIFY that queuing a message sends, and polling besides).
// Publishes WebhookEndpoint, WebhookMessage and WebhookSecret.
import fp from 'fastify-plugin';
import type { Listener } from '../db/database.js';
import { DEFAULT_HEARTBEAT_MS } from '../jobs/job-runner.js';
import { WebhookDispatcher, type Clock } from '../jobs/webhook-dispatcher.js';
import { WebhookEndpointSchema, WebhookMessageSchema, WebhookSecretSchema } from '../schemas/webhooks.js';
import { WebhookEndpointsService } from '../services/webhook-endpoints.js';
import { WebhookMessagesService } from '../services/webhook-messages.js';
import { WebhookSecretsService } from '../services/webhook-secrets.js';
import type { AddressPolicy } from '../webhooks/address-policy.js';
import type { HostLookup } from '../webhooks/safe-post.js';

/** Added to twice the timeout for a dispatcher's lease on a message (a slow database, a slow renderer). */
const LEASE_MARGIN_MS = 5000;
/** How often to look for due messages (retries come due without a NOTIFY). */
export const WEBHOOK_POLL_MS = 1000;

declare module 'fastify' {
  interface FastifyInstance {
    webhooks: {
      policy: AddressPolicy;
      endpoints: WebhookEndpointsService;
      messages: WebhookMessagesService;
      secrets: WebhookSecretsService;
      dispatcher: WebhookDispatcher | undefined;
      /** Look for due messages now (the NOTIFY of a due message does this on every replica). */
      wake(): void;
    };
  }
}

export interface WebhooksPluginOptions {
  /** Tests: the dispatcher's clock, retry jitter and name resolution. */
  clock?: Clock;
  random?: () => number;
  lookup?: HostLookup;
}

export default fp<WebhooksPluginOptions>(
  async (fastify, options) => {
    for (const schema of [WebhookEndpointSchema, WebhookMessageSchema, WebhookSecretSchema]) fastify.addSchema(schema);
    const config = fastify.config.webhooks;
    const dispatcher = config.slots === 0
      ? undefined
      : new WebhookDispatcher({
        db: fastify.db,
        policy: config.policy,
        logger: fastify.log.child({ component: 'webhook-dispatcher' }),
        slots: config.slots,
        timeoutMs: config.timeoutMs,
        disableAfterMs: config.disableAfterMs,
        // A lease outlives the longest attempt, so a slow receiver is not sent the message twice.
        leaseMs: config.timeoutMs * 2 + LEASE_MARGIN_MS,
        heartbeatMs: DEFAULT_HEARTBEAT_MS,
        pollMs: WEBHOOK_POLL_MS,
        metrics: fastify.metrics,
        ...(options.clock === undefined ? {} : { clock: options.clock }),
        ...(options.random === undefined ? {} : { random: options.random }),
        ...(options.lookup === undefined ? {} : { lookup: options.lookup }),
      });
    const wake = () => dispatcher?.wake();
    fastify.decorate('webhooks', {
      policy: config.policy,
      endpoints: new WebhookEndpointsService(fastify.db, config.policy),
      messages: new WebhookMessagesService(fastify.db),
      secrets: new WebhookSecretsService(fastify.db),
      dispatcher,
      wake,
    });

    let listener: Listener | undefined;
    fastify.addHook('onReady', async () => {
      if (dispatcher === undefined) return;
      dispatcher.start();
      // While its connection is down, messages are found by polling (WEBHOOK_POLL_MS).
      listener = await fastify.db.listen('webhook_messages', wake);
    });
    fastify.addHook('onClose', async () => {
      await listener?.close();
      await dispatcher?.stop();
    });
  },
  { name: 'webhooks', dependencies: ['database', 'metrics'] },
);
