// The check every webhook URL gets where it is given (endpoint create and update, the
// `webhook` field of runs and jobs): refused on its face (scheme, credentials, a forbidden IP
// literal) is a 400 naming the field. A host name that resolves to a forbidden address is
// only known at delivery, and fails that attempt (src/webhooks/safe-post.ts).
import { fieldError, invalidInput } from '../errors.js';
import type { AddressPolicy } from '../webhooks/address-policy.js';

export function checkWebhookUrl(policy: AddressPolicy, url: string, field: string): void {
  const refusal = policy.checkUrl(url);
  if (refusal !== undefined) throw invalidInput(`Invalid body: ${field} ${refusal}`, [fieldError('body', field, refusal)]);
}
