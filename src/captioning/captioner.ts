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
  | 'canceled';

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

export interface CaptionerRegistry {
  readonly defaultProvider: CaptionProvider;
  /** undefined = not configured. */
  get(provider: CaptionProvider): Captioner | undefined;
  configured(): CaptionProvider[];
}
