// Delivers webhook messages, on the shared JobRunner (job-runner.ts): claims a due message
// under a lease (so among any number of replicas one sends each attempt), POSTs it through
// safePost (the SSRF-safe client), records the attempt, and schedules the next one on the
// Standard Webhooks retry schedule (retry-schedule.ts) or settles the message. A 410 from a
// tenant endpoint disables it; so does an endpoint whose every attempt has failed for
// WEBHOOK_DISABLE_AFTER_MS. Due times come from an injectable clock, so tests can run a day
// of retries without waiting for it.
import type { FastifyBaseLogger } from 'fastify';
import type { Database } from '../db/database.js';
import { retryWhileUnavailable } from '../db/unavailable.js';
import type { ServiceMetrics } from '../metrics/service-metrics.js';
import { createWebhookEndpointsRepository } from '../repositories/webhook-endpoints.js';
import { createWebhookMessagesRepository, recordAttempt, type AttemptOutcome, type WebhookMessageRow } from '../repositories/webhook-messages.js';
import { createWebhookSecretsRepository, signingSecrets } from '../repositories/webhook-secrets.js';
import type { AddressPolicy } from '../webhooks/address-policy.js';
import { renderPayload } from '../webhooks/payload.js';
import { nextRetryDelay, parseRetryAfter } from '../webhooks/retry-schedule.js';
import { safePost, WebhookDeliveryError, type HostLookup } from '../webhooks/safe-post.js';
import { webhookHeaders } from '../webhooks/signing.js';
import { JobRunner } from './job-runner.js';

export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

export interface WebhookDispatcherOptions {
  db: Database;
  policy: AddressPolicy;
  logger: FastifyBaseLogger;
  /** Messages sent side by side by this process. */
  slots: number;
  /** A delivery that has no response status in this time failed. */
  timeoutMs: number;
  /** An endpoint whose attempts have all failed for this long is disabled. */
  disableAfterMs: number;
  leaseMs: number;
  heartbeatMs: number;
  pollMs: number;
  clock?: Clock;
  /** In [0, 1): the retry jitter. */
  random?: () => number;
  /** Host name resolution (tests point names at chosen addresses). */
  lookup?: HostLookup;
  /** Attempts by result and delivery lag for /metrics. */
  metrics?: ServiceMetrics;
}

/** Where one message goes, with which secrets; or why it is not sent. */
type Target = { url: string; secrets: string[]; failing: boolean } | { url: string; refused: { code: string; message: string } };

export class WebhookDispatcher extends JobRunner<WebhookMessageRow> {
  readonly #options: WebhookDispatcherOptions;
  readonly #clock: Clock;

  constructor(options: WebhookDispatcherOptions) {
    const messages = createWebhookMessagesRepository(options.db);
    const clock = options.clock ?? systemClock;
    super({
      kind: 'webhook message',
      queue: {
        claimNext: (owner, leaseMs) => messages.claimNext(owner, leaseMs, clock.now()),
        heartbeat: (id, owner, leaseMs) => messages.heartbeat(id, owner, leaseMs),
      },
      logger: options.logger,
      slots: options.slots,
      leaseMs: options.leaseMs,
      heartbeatMs: options.heartbeatMs,
      pollMs: options.pollMs,
    });
    this.#options = options;
    this.#clock = clock;
  }

  async #target(message: WebhookMessageRow): Promise<Target> {
    const { db } = this.#options;
    const secrets = createWebhookSecretsRepository(db);
    if (message.endpoint_id === null) {
      const row = await secrets.getOrCreate(message.tenant_id, message.tenant_id);
      return { url: message.url!, secrets: signingSecrets(row, this.#clock.now()), failing: false };
    }
    const endpoint = await createWebhookEndpointsRepository(db).findById(message.endpoint_id);
    if (endpoint === null) return { url: '', refused: { code: 'endpoint_deleted', message: 'the endpoint was deleted' } };
    if (!endpoint.enabled) {
      const why = endpoint.disabled_reason === null ? 'through the API' : `(${endpoint.disabled_reason})`;
      return { url: endpoint.url, refused: { code: 'endpoint_disabled', message: `the endpoint is disabled ${why}` } };
    }
    const row = await secrets.getOrCreate(message.tenant_id, endpoint.id);
    return { url: endpoint.url, secrets: signingSecrets(row, this.#clock.now()), failing: endpoint.failing_since !== null };
  }

  protected async runJob(message: WebhookMessageRow, controller: AbortController): Promise<void> {
    const { db, policy, logger } = this.#options;
    const log = logger.child({ message: message.id, tenant: message.tenant_id, event: message.event_type });
    const messages = createWebhookMessagesRepository(db);
    if (controller.signal.aborted) {
      await messages.release(message.id, this.owner);
      return;
    }
    const startedAt = this.#clock.now();
    const attempt = message.attempts + 1;
    const target = await this.#target(message);
    const payload = message.payload ?? (await renderPayload(db, message));
    const base = { url: target.url, startedAt, payload, statusCode: null, latencyMs: null, responseBody: null, errorCode: null, errorMessage: null };

    let outcome: AttemptOutcome;
    let endpointGone = false;
    if ('refused' in target) {
      outcome = { ...base, errorCode: target.refused.code, errorMessage: target.refused.message, status: 'failed', nextAttemptAt: null };
    } else {
      try {
        const response = await safePost(target.url, {
          body: payload,
          headers: { ...webhookHeaders(target.secrets, message.id, payload, new Date()), 'user-agent': 'sdxl-lora-service-webhooks/1' },
          timeoutMs: this.#options.timeoutMs,
          policy,
          ...(this.#options.lookup === undefined ? {} : { lookup: this.#options.lookup }),
        });
        const answered = { ...base, statusCode: response.status, latencyMs: Math.round(response.latencyMs), responseBody: response.bodyPrefix };
        if (response.status >= 200 && response.status <= 299) {
          outcome = { ...answered, status: 'succeeded', nextAttemptAt: null };
        } else if (response.status === 410) {
          // Gone: never retried; a tenant endpoint is disabled too.
          endpointGone = message.endpoint_id !== null;
          const why = endpointGone ? 'the endpoint is disabled' : 'not retried';
          outcome = { ...answered, errorCode: 'gone', errorMessage: `the receiver answered 410 Gone: ${why}`, status: 'failed', nextAttemptAt: null };
        } else {
          const retryAfter = parseRetryAfter(response.headers['retry-after'], startedAt);
          outcome = this.#retry({ ...answered, errorCode: 'http_status', errorMessage: `the receiver answered ${response.status}` }, attempt, retryAfter);
        }
      } catch (error) {
        if (!(error instanceof WebhookDeliveryError)) throw error;
        const failed = { ...base, errorCode: error.code, errorMessage: error.message };
        // A URL refused on its face stays refused; anything else may work later (DNS, a restarted receiver).
        outcome = error.code === 'url_refused' ? { ...failed, status: 'failed', nextAttemptAt: null } : this.#retry(failed, attempt, undefined);
      }
    }

    // Made while the database is away, the attempt waits for it: a message delivered is not sent again.
    const recorded = await retryWhileUnavailable(() => recordAttempt(db, message.id, this.owner, outcome),
      () => log.warn('the database is unavailable: the attempt\'s record waits for it'));
    if (!recorded) {
      log.warn('webhook attempt finished after its lease was lost; another dispatcher has the message');
      return;
    }
    const result = outcome.status === 'succeeded' ? 'delivered' : outcome.status === 'failed' ? 'failed' : 'retrying';
    this.#options.metrics?.webhookAttempt(result, (this.#clock.now().getTime() - message.created_at.getTime()) / 1000);
    if (message.endpoint_id !== null && !('refused' in target)) await this.#endpointHealth(message.endpoint_id, target.failing, outcome, endpointGone, startedAt, log);
    const fields = { attempt, status: outcome.statusCode, error: outcome.errorCode, next: outcome.nextAttemptAt };
    if (outcome.status === 'succeeded') log.info(fields, 'webhook delivered');
    else if (outcome.status === 'failed') log.warn(fields, 'webhook failed for good');
    else log.info(fields, 'webhook attempt failed; will retry');
  }

  #retry(failed: Omit<AttemptOutcome, 'status' | 'nextAttemptAt'>, attempt: number, retryAfterMs: number | undefined): AttemptOutcome {
    const delay = nextRetryDelay(attempt, retryAfterMs, this.#options.random ?? Math.random);
    if (delay === undefined) return { ...failed, status: 'failed', nextAttemptAt: null };
    return { ...failed, status: 'pending', nextAttemptAt: new Date(failed.startedAt.getTime() + delay) };
  }

  /** A success ends the endpoint's failure streak (`failing`: it had one), a 410 or a long streak disables it. */
  async #endpointHealth(endpointId: string, failing: boolean, outcome: AttemptOutcome, gone: boolean, at: Date, log: FastifyBaseLogger): Promise<void> {
    const endpoints = createWebhookEndpointsRepository(this.#options.db);
    if (outcome.status === 'succeeded') {
      if (failing) await endpoints.succeeded(endpointId);
    } else if (gone) {
      await endpoints.gone(endpointId);
      log.warn({ endpoint: endpointId }, 'webhook endpoint answered 410 Gone and is disabled');
    } else if (await endpoints.failed(endpointId, at, this.#options.disableAfterMs)) {
      log.warn({ endpoint: endpointId }, 'webhook endpoint disabled: every attempt failed for WEBHOOK_DISABLE_AFTER_MS');
    }
  }
}
