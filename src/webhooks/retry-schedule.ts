// When a failed webhook attempt is tried again: the Standard Webhooks / Svix schedule,
// counted from each failure (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: eight
// attempts over about 28 hours), with jitter so a receiver back from an outage is not hit by
// every message at once. A Retry-After answer can push the next attempt later, never sooner,
// and never beyond the longest step.

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;

/** Delay before attempt n + 1 (index n - 1); the first attempt is made at once. */
export const RETRY_DELAYS_MS = [5 * SECOND, 5 * MINUTE, 30 * MINUTE, 2 * HOUR, 5 * HOUR, 10 * HOUR, 10 * HOUR] as const;
/** Attempts of one message before it fails. */
export const MAX_ATTEMPTS = RETRY_DELAYS_MS.length + 1;
/** The longest wait a Retry-After can ask for. */
export const MAX_RETRY_AFTER_MS = 10 * HOUR;
/** Up to this fraction of a delay is added at random. */
const JITTER = 0.1;

/** Milliseconds a Retry-After header asks for (seconds or an HTTP date), or undefined. */
export function parseRetryAfter(value: string | string[] | undefined, now: Date): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || text.trim() === '') return undefined;
  if (/^\s*\d+\s*$/.test(text)) return Number(text) * SECOND;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now.getTime());
}

/**
 * The delay before the next attempt after `attempts` failed ones, or undefined when the
 * message has had all its attempts. `random` is in [0, 1) (Math.random unless a test pins it).
 */
export function nextRetryDelay(attempts: number, retryAfterMs: number | undefined, random: () => number): number | undefined {
  if (attempts >= MAX_ATTEMPTS) return undefined;
  const scheduled = RETRY_DELAYS_MS[attempts - 1]!;
  const jittered = Math.round(scheduled * (1 + JITTER * random()));
  return retryAfterMs === undefined ? jittered : Math.max(jittered, Math.min(retryAfterMs, MAX_RETRY_AFTER_MS));
}
