// Retries of caption requests. Each attempt either returns or throws an AttemptFailure that says
// whether the failure is transient; transient ones (429, 529, 5xx, timeouts, connection errors)
// wait for the server's retry-after (retry-after-ms, retry-after seconds or HTTP-date) or else an
// exponential backoff with jitter. 400/401/403 are never retried. An invalid answer is retried
// once, at once, on its own budget. The SDK's own retries are off so that attempts are counted here.
import { setTimeout as delay } from 'node:timers/promises';
import type { FastifyBaseLogger } from 'fastify';
import { CaptionError, type CaptionErrorCode } from './captioner.js';
import type { CaptionRequestPolicy } from './config.js';

/** Longest wait between two attempts; a longer retry-after ends the retries instead of blocking a job slot. */
export const MAX_RETRY_DELAY_MS = 60_000;
/** Retries of an answer that failed validation (missing or bad caption). */
export const INVALID_OUTPUT_RETRIES = 1;

/** One failed attempt, as the provider classified it. */
export class AttemptFailure extends Error {
  override name = 'AttemptFailure';
  constructor(
    readonly code: CaptionErrorCode,
    message: string,
    readonly retryable: boolean,
    readonly status?: number,
    /** The server's requested wait, when it sent one. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

interface HeaderSource {
  get(name: string): string | null;
}

/** The wait the server asks for, in ms: retry-after-ms, else retry-after as seconds or an HTTP-date. undefined when absent or unreadable. */
export function parseRetryAfter(headers: HeaderSource | undefined, now: number = Date.now()): number | undefined {
  if (headers === undefined) return undefined;
  const ms = headers.get('retry-after-ms');
  if (ms !== null && ms.trim() !== '') {
    const value = Number(ms);
    if (Number.isFinite(value) && value >= 0) return value;
  }
  const header = headers.get('retry-after');
  if (header === null || header.trim() === '') return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return seconds >= 0 ? seconds * 1000 : undefined;
  const date = Date.parse(header);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, date - now);
}

/** Whether an HTTP status is worth retrying: 408, 409, 429, and 5xx including Anthropic's 529 "overloaded". */
export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/** Maps an HTTP error status to an error code. */
export function codeForStatus(status: number): CaptionErrorCode {
  if (status === 429) return 'rate_limited';
  if (status === 529) return 'overloaded';
  if (status === 408) return 'timeout';
  if (status === 401 || status === 403) return 'auth';
  if (status >= 500 || status === 409) return 'server_error';
  return 'bad_request';
}

/** A failure from an HTTP error answer, honouring x-should-retry (Anthropic) over the status rule. */
export function failureForStatus(status: number, message: string, headers: HeaderSource | undefined): AttemptFailure {
  const shouldRetry = headers?.get('x-should-retry');
  const retryable = shouldRetry === 'true' ? true : shouldRetry === 'false' ? false : isRetryableStatus(status);
  // 400/401/403 are caller errors whatever the header says.
  const never = status === 400 || status === 401 || status === 403;
  return new AttemptFailure(codeForStatus(status), message, retryable && !never, status, parseRetryAfter(headers));
}

/** Exponential backoff with "equal jitter": half the step fixed, half random, so parallel requests spread out. */
export function backoffMs(retry: number, baseMs: number, random: () => number = Math.random): number {
  const step = Math.min(MAX_RETRY_DELAY_MS, baseMs * 2 ** (retry - 1));
  return Math.round(step / 2 + random() * (step / 2));
}

/**
 * Whether a batch request that failed, sent `attempts` times so far, goes into a new batch: the
 * same budget as withRetries (an invalid answer once more, transient failures up to the retries).
 */
export function shouldResubmit(error: CaptionError, attempts: number, policy: CaptionRequestPolicy): boolean {
  if (error.code === 'invalid_output') return attempts <= INVALID_OUTPUT_RETRIES;
  return error.retryable && attempts <= policy.maxRetries;
}

export interface RetryContext {
  provider: string;
  /** What is being captioned, for the log (an image id, or "normalize"). */
  subjectId: string;
  logger?: FastifyBaseLogger | undefined;
}

/**
 * Runs `attempt` until it returns, retrying per `policy`. Throws CaptionError: 'canceled' as
 * soon as `signal` aborts, else the last failure's code with the number of attempts made.
 */
export async function withRetries<T>(
  attempt: (attemptNumber: number) => Promise<T>,
  policy: CaptionRequestPolicy,
  signal: AbortSignal,
  context: RetryContext,
): Promise<T> {
  let attempts = 0;
  let transientRetries = 0;
  let invalidRetries = 0;
  for (;;) {
    if (signal.aborted) throw new CaptionError('canceled', 'caption request canceled', { retryable: false, attempts });
    attempts += 1;
    let failure: AttemptFailure;
    try {
      return await attempt(attempts);
    } catch (err) {
      if (signal.aborted) throw new CaptionError('canceled', 'caption request canceled', { retryable: false, attempts });
      if (!(err instanceof AttemptFailure)) throw err;
      failure = err;
    }

    let waitMs: number | undefined;
    if (failure.code === 'invalid_output') {
      if (invalidRetries < INVALID_OUTPUT_RETRIES) {
        invalidRetries += 1;
        waitMs = 0;
      }
    } else if (failure.retryable && transientRetries < policy.maxRetries) {
      transientRetries += 1;
      const wanted = failure.retryAfterMs ?? backoffMs(transientRetries, policy.retryBaseMs);
      if (wanted <= MAX_RETRY_DELAY_MS) waitMs = wanted;
    }
    if (waitMs === undefined) {
      throw new CaptionError(failure.code, failure.message, {
        retryable: failure.code !== 'invalid_output' && failure.retryable,
        attempts,
        ...(failure.status !== undefined ? { status: failure.status } : {}),
      });
    }
    context.logger?.warn(
      { provider: context.provider, subjectId: context.subjectId, attempt: attempts, code: failure.code, status: failure.status, waitMs, reason: failure.message },
      'caption request failed; retrying',
    );
    if (waitMs > 0) {
      try {
        await delay(waitMs, undefined, { signal });
      } catch {
        throw new CaptionError('canceled', 'caption request canceled', { retryable: false, attempts });
      }
    }
  }
}
