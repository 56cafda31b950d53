// Standard Webhooks signatures (https://www.standardwebhooks.com): a secret is "whsec_" and
// the base64 of random bytes; a signature is "v1," and the base64 HMAC-SHA256, keyed with the
// secret's bytes, of "<webhook-id>.<webhook-timestamp>.<body>". Several signatures (during a
// rotation) are sent space-separated in one webhook-signature header.
import { createHmac, randomBytes } from 'node:crypto';

const PREFIX = 'whsec_';
/** The spec allows 24 to 64 bytes; 32 is what Svix issues. */
const SECRET_BYTES = 32;

export function newWebhookSecret(): string {
  return PREFIX + randomBytes(SECRET_BYTES).toString('base64');
}

function secretKey(secret: string): Buffer {
  if (!secret.startsWith(PREFIX)) throw new Error('a webhook secret starts with whsec_');
  return Buffer.from(secret.slice(PREFIX.length), 'base64');
}

/** The webhook-signature header value: one "v1,<base64>" per secret, space-separated. */
export function signWebhook(secrets: readonly string[], id: string, timestampSeconds: number, body: string): string {
  return secrets
    .map((secret) => `v1,${createHmac('sha256', secretKey(secret)).update(`${id}.${timestampSeconds}.${body}`).digest('base64')}`)
    .join(' ');
}

/** The three headers of one delivery attempt; the timestamp is the attempt's own. */
export function webhookHeaders(secrets: readonly string[], id: string, body: string, now: Date): Record<string, string> {
  const timestamp = Math.floor(now.getTime() / 1000);
  return {
    'content-type': 'application/json',
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': signWebhook(secrets, id, timestamp, body),
  };
}
