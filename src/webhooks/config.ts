// The webhook variables (README "Configuration"), read with the rest in src/config.ts.
import { Type, type Static } from 'typebox';
import { AddressPolicy, AllowedHostError, parseAllowedHosts } from './address-policy.js';

export const WebhookEnvProperties = {
  /** Allow plain http:// webhook URLs (private networks, tests); https only otherwise. */
  WEBHOOK_ALLOW_HTTP: Type.Boolean({ default: false }),
  /** Comma-separated host names, IPs and CIDRs that may be sent to although they are private or loopback. */
  WEBHOOK_ALLOWED_HOSTS: Type.String({ default: '' }),
  /** Milliseconds a receiver has to answer an attempt. */
  WEBHOOK_TIMEOUT_MS: Type.Integer({ minimum: 100, maximum: 120_000, default: 15_000 }),
  /** Messages this process sends side by side; 0 = none here. */
  WEBHOOK_SLOTS: Type.Integer({ minimum: 0, maximum: 256, default: 16 }),
  /** An endpoint whose every attempt failed for this long is disabled (5 days, as Svix). */
  WEBHOOK_DISABLE_AFTER_MS: Type.Integer({ minimum: 60_000, default: 5 * 24 * 3_600_000 }),
};

const WebhookEnv = Type.Object(WebhookEnvProperties);

export interface WebhookConfig {
  policy: AddressPolicy;
  timeoutMs: number;
  slots: number;
  disableAfterMs: number;
}

export class WebhookConfigError extends Error {
  override name = 'WebhookConfigError';
}

export function webhookConfigFromEnv(env: Static<typeof WebhookEnv>): WebhookConfig {
  let policy: AddressPolicy;
  try {
    policy = new AddressPolicy({ allowHttp: env.WEBHOOK_ALLOW_HTTP, allowedHosts: parseAllowedHosts(env.WEBHOOK_ALLOWED_HOSTS) });
  } catch (error) {
    if (error instanceof AllowedHostError) throw new WebhookConfigError(`WEBHOOK_ALLOWED_HOSTS: ${error.message}`);
    throw error;
  }
  return { policy, timeoutMs: env.WEBHOOK_TIMEOUT_MS, slots: env.WEBHOOK_SLOTS, disableAfterMs: env.WEBHOOK_DISABLE_AFTER_MS };
}
