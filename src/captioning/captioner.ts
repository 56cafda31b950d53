// The captioner contract: images in, one training caption per image out. Providers
// (anthropic, openai-compatible, template) implement Captioner; the caption jobs only see this file.

export type CaptionProvider = 'anthropic' | 'openai-compatible' | 'template';
export const CAPTION_PROVIDERS: readonly CaptionProvider[] = ['anthropic', 'openai-compatible', 'template'];

/** What the LoRA learns (trigger + class word) and an optional hint on the wanted style of caption. */
export interface CaptionSubject {
  /** The rare token that will stand for the identity, e.g. "sks". */
  trigger: string;
  /** The class the subject belongs to, e.g. "woman", "dog", "backpack". */
  classWord: string;
  styleHint?: string;
}

export interface CaptionImageInput {
  imageId: string;
  filename: string;
  sha256: string;
  bytes: Buffer;
  mediaType: string;
}

export interface CaptionUsage {
  inputTokens: number;
  outputTokens: number;
}

export interface CaptionOutcome {
  caption: string;
  model: string;
  promptVersion: string;
  /** Summed over every attempt that reached the provider, retries included. */
  usage: CaptionUsage;
  /** Estimated from usage and the model's list price; null when the model's price is unknown. */
  costUsd: number | null;
}

export interface NormalizedCaptions {
  captions: { imageId: string; caption: string }[];
  usage: CaptionUsage;
  costUsd: number | null;
}

export interface Captioner {
  readonly provider: CaptionProvider;
  /** 'template' for the template provider. */
  readonly model: string;
  /** Changes whenever the prompt or tool schema changes (part of a caption cache key). */
  readonly promptVersion: string;
  /** Retries inside; throws CaptionError. */
  caption(image: CaptionImageInput, subject: CaptionSubject, signal: AbortSignal): Promise<CaptionOutcome>;
  /** The provider's batch API (anthropic only); undefined when it has none. */
  readonly batches?: CaptionBatches;
  /** The consistency pass: one vocabulary and structure for a whole set, nothing invented. Template: identity. */
  normalize(
    captions: { imageId: string; caption: string }[],
    subject: CaptionSubject,
    signal: AbortSignal,
  ): Promise<NormalizedCaptions>;
}

export type CaptionErrorCode =
  | 'rate_limited'
  | 'overloaded'
  | 'server_error'
  | 'timeout'
  | 'invalid_output'
  | 'bad_request'
  | 'auth'
  | 'network'
  | 'canceled'
  /** A batch request the provider did not get to within its 24 hours. */
  | 'expired';

/** A caption request that failed for good (after any retries). The message never holds keys or image bytes. */
export class CaptionError extends Error {
  override name = 'CaptionError';
  readonly code: CaptionErrorCode;
  /** Whether trying again later (a new job run) may succeed. */
  readonly retryable: boolean;
  /** Requests made before giving up (1 = no retry). */
  readonly attempts: number;
  /** HTTP status of the last response, when there was one. */
  readonly status?: number;

  constructor(code: CaptionErrorCode, message: string, opts: { retryable: boolean; attempts: number; status?: number }) {
    super(message);
    this.code = code;
    this.retryable = opts.retryable;
    this.attempts = opts.attempts;
    if (opts.status !== undefined) this.status = opts.status;
  }
}

// ---------------------------------------------------------------- batches

/** One image's request in a batch: exactly what caption() would send, under a custom id. */
export interface BatchRequest {
  customId: string;
  /** Size of the request in the batch's body, for the provider's per-batch limit. */
  bytes: number;
  params: unknown;
}

export type BatchStatus = 'in_progress' | 'canceling' | 'ended';

export interface BatchCounts {
  processing: number;
  succeeded: number;
  errored: number;
  canceled: number;
  expired: number;
}

export interface BatchState {
  providerBatchId: string;
  status: BatchStatus;
  counts: BatchCounts;
}

/** One request's result; usage and cost are what it was billed (an invalid answer is paid for too). */
export type BatchItemResult =
  | { customId: string; ok: true; outcome: CaptionOutcome }
  | { customId: string; ok: false; error: CaptionError; usage: CaptionUsage; costUsd: number | null };

/** A provider's asynchronous batch API. Every call throws CaptionError (attempts 1) when it fails. */
export interface CaptionBatches {
  /** Largest body of one batch the provider accepts, in bytes. */
  readonly maxBatchBytes: number;
  /** Builds the request for one image (throws CaptionError 'bad_request' when it cannot be decoded). */
  request(customId: string, image: CaptionImageInput, subject: CaptionSubject, signal: AbortSignal): Promise<BatchRequest>;
  submit(requests: readonly BatchRequest[]): Promise<BatchState>;
  retrieve(providerBatchId: string): Promise<BatchState>;
  /** Streams the results of an ended batch, one at a time (never all of them in memory). */
  results(providerBatchId: string, subject: CaptionSubject, signal: AbortSignal): AsyncIterable<BatchItemResult>;
  cancel(providerBatchId: string): Promise<BatchState>;
}

export interface CaptionerRegistry {
  readonly defaultProvider: CaptionProvider;
  /** undefined = not configured. */
  get(provider: CaptionProvider): Captioner | undefined;
  configured(): CaptionProvider[];
}
