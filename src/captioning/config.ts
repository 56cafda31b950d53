// The captioning feature's environment variables (merged into the service's EnvSchema by
// src/config.ts, like ImageEnvProperties) and the CaptionConfig the captioners are built from.
import { Type } from 'typebox';
import { CAPTION_PROVIDERS, type CaptionProvider } from './captioner.js';
import { readSecret, type Secret } from './secrets.js';

/**
 * Default Anthropic model: Claude Haiku 5.5 reads images, lets thinking be turned off (which a
 * forced tool_choice needs; Sonnet 5.5, Opus 5.5 and Fable reject that combination) and is the
 * cheapest current model ($0.10 / $0.50 per MTok), which suits one short caption per image.
 */
export const DEFAULT_ANTHROPIC_MODEL = 'claude-haiku-5-5';

/** Environment variables of the captioning feature, with their defaults (README "Configuration"). */
export const CaptionEnvProperties = {
  /** Anthropic API key; empty means ANTHROPIC_API_KEY_FILE, and without either the anthropic provider is off. Never logged. */
  ANTHROPIC_API_KEY: Type.String({ default: '' }),
  /** Path of a file holding the Anthropic API key (a mounted secret); read when ANTHROPIC_API_KEY is empty. */
  ANTHROPIC_API_KEY_FILE: Type.String({ default: '' }),
  /** Base URL of the Anthropic API; empty means the SDK's default (https://api.anthropic.com). */
  ANTHROPIC_BASE_URL: Type.String({ default: '' }),
  /** Claude model that writes the captions; it must accept images, thinking turned off and a forced tool_choice (Haiku 5.5 and 4.5, Sonnet 5, Opus 5 do). */
  CAPTION_ANTHROPIC_MODEL: Type.String({ minLength: 1, default: DEFAULT_ANTHROPIC_MODEL }),
  /** Most tokens one caption (or consistency-pass) answer may use. */
  CAPTION_MAX_TOKENS: Type.Integer({ minimum: 64, maximum: 64_000, default: 1024 }),
  /** Sampling temperature of openai-compatible caption requests; 0 gives the most consistent wording across a set. The Anthropic API (version 2026-10-21) rejects sampling parameters, so anthropic requests carry none. */
  CAPTION_TEMPERATURE: Type.Number({ minimum: 0, maximum: 1, default: 0 }),
  /** Base URL of an OpenAI-compatible chat-completions server with a vision model (vLLM, llama.cpp, ...), e.g. http://vllm:8000/v1; empty means the provider is off. */
  OPENAI_COMPAT_BASE_URL: Type.String({ default: '' }),
  /** Bearer key of the OpenAI-compatible server; empty means OPENAI_COMPAT_API_KEY_FILE, and without either no Authorization header is sent. Never logged. */
  OPENAI_COMPAT_API_KEY: Type.String({ default: '' }),
  /** Path of a file holding the OpenAI-compatible key; read when OPENAI_COMPAT_API_KEY is empty. */
  OPENAI_COMPAT_API_KEY_FILE: Type.String({ default: '' }),
  /** Model name the OpenAI-compatible server serves (the `model` field of each request). */
  OPENAI_COMPAT_MODEL: Type.String({ minLength: 1, default: 'Qwen/Qwen2.5-VL-7B-Instruct' }),
  /** Most caption requests in flight at once per job. */
  CAPTION_CONCURRENCY: Type.Integer({ minimum: 1, maximum: 64, default: 4 }),
  /** Milliseconds one caption request may take before it is abandoned (and retried). */
  CAPTION_REQUEST_TIMEOUT_MS: Type.Integer({ minimum: 1, default: 60_000 }),
  /** Retries of one request after 429, 529, 5xx, timeouts and connection errors (0 = try once). */
  CAPTION_MAX_RETRIES: Type.Integer({ minimum: 0, maximum: 20, default: 4 }),
  /** First backoff delay in milliseconds; doubles per retry, with jitter, unless the answer names a retry-after. */
  CAPTION_RETRY_BASE_MS: Type.Integer({ minimum: 0, default: 500 }),
  /** Longest caption accepted from a provider, in characters. */
  CAPTION_MAX_CHARS: Type.Integer({ minimum: 16, maximum: 10_000, default: 1000 }),
  /** Jobs of more images than this go through the provider's batch API (anthropic) unless they ask for mode interactive. */
  CAPTION_BATCH_THRESHOLD: Type.Integer({ minimum: 0, default: 50 }),
  /** Most requests in one batch (the Message Batches API takes up to 100,000). */
  CAPTION_BATCH_MAX_REQUESTS: Type.Integer({ minimum: 1, maximum: 100_000, default: 10_000 }),
  /** Milliseconds between two looks at a job's batches in flight. */
  CAPTION_BATCH_POLL_MS: Type.Integer({ minimum: 10, default: 30_000 }),
  /** Provider used when a request names none: anthropic, openai-compatible or template; empty means anthropic when its key is set, else template. */
  CAPTION_DEFAULT_PROVIDER: Type.Enum(['', ...CAPTION_PROVIDERS], { default: '' }),
};

export interface CaptionEnv {
  ANTHROPIC_API_KEY: string;
  ANTHROPIC_API_KEY_FILE: string;
  ANTHROPIC_BASE_URL: string;
  CAPTION_ANTHROPIC_MODEL: string;
  CAPTION_MAX_TOKENS: number;
  CAPTION_TEMPERATURE: number;
  OPENAI_COMPAT_BASE_URL: string;
  OPENAI_COMPAT_API_KEY: string;
  OPENAI_COMPAT_API_KEY_FILE: string;
  OPENAI_COMPAT_MODEL: string;
  CAPTION_CONCURRENCY: number;
  CAPTION_REQUEST_TIMEOUT_MS: number;
  CAPTION_MAX_RETRIES: number;
  CAPTION_RETRY_BASE_MS: number;
  CAPTION_MAX_CHARS: number;
  CAPTION_DEFAULT_PROVIDER: string;
  CAPTION_BATCH_THRESHOLD: number;
  CAPTION_BATCH_MAX_REQUESTS: number;
  CAPTION_BATCH_POLL_MS: number;
}

/** Batch mode (the provider's batch API): when a job uses it by default, and how it is sent and watched. */
export interface CaptionBatchPolicy {
  /** Jobs of more images than this default to batch mode. */
  threshold: number;
  maxRequests: number;
  pollMs: number;
}

/** Timeouts and retries shared by the HTTP providers. */
export interface CaptionRequestPolicy {
  timeoutMs: number;
  /** Retries after the first attempt. */
  maxRetries: number;
  retryBaseMs: number;
}

export interface CaptionConfig {
  /** Resolved: never empty. */
  defaultProvider: CaptionProvider;
  /** undefined when no key is configured (the provider is off). */
  anthropic: { apiKey: Secret; baseUrl: string | undefined; model: string } | undefined;
  /** undefined when OPENAI_COMPAT_BASE_URL is empty (the provider is off). */
  openaiCompatible: { baseUrl: string; apiKey: Secret | undefined; model: string } | undefined;
  maxTokens: number;
  temperature: number;
  concurrency: number;
  maxChars: number;
  request: CaptionRequestPolicy;
  batch: CaptionBatchPolicy;
}

export class CaptionConfigError extends Error {
  override name = 'CaptionConfigError';
}

function emptyToUndefined(value: string | undefined): string | undefined {
  const trimmed = value?.trim() ?? '';
  return trimmed === '' ? undefined : trimmed;
}

/** Builds CaptionConfig; reads key files (throws SecretFileError) and checks the default provider is configured. */
export function captionConfigFromEnv(env: CaptionEnv): CaptionConfig {
  const anthropicKey = readSecret(env.ANTHROPIC_API_KEY, env.ANTHROPIC_API_KEY_FILE, 'ANTHROPIC_API_KEY_FILE');
  const anthropic = anthropicKey === undefined
    ? undefined
    : { apiKey: anthropicKey, baseUrl: emptyToUndefined(env.ANTHROPIC_BASE_URL), model: env.CAPTION_ANTHROPIC_MODEL };

  const openaiBaseUrl = emptyToUndefined(env.OPENAI_COMPAT_BASE_URL);
  const openaiCompatible = openaiBaseUrl === undefined
    ? undefined
    : {
        baseUrl: openaiBaseUrl,
        apiKey: readSecret(env.OPENAI_COMPAT_API_KEY, env.OPENAI_COMPAT_API_KEY_FILE, 'OPENAI_COMPAT_API_KEY_FILE'),
        model: env.OPENAI_COMPAT_MODEL,
      };

  const named = emptyToUndefined(env.CAPTION_DEFAULT_PROVIDER);
  let defaultProvider: CaptionProvider;
  if (named === undefined) {
    defaultProvider = anthropic !== undefined ? 'anthropic' : 'template';
  } else if (!(CAPTION_PROVIDERS as readonly string[]).includes(named)) {
    throw new CaptionConfigError(`CAPTION_DEFAULT_PROVIDER must be one of ${CAPTION_PROVIDERS.join(', ')}`);
  } else {
    defaultProvider = named as CaptionProvider;
  }
  if (defaultProvider === 'anthropic' && anthropic === undefined) {
    throw new CaptionConfigError('CAPTION_DEFAULT_PROVIDER is anthropic but neither ANTHROPIC_API_KEY nor ANTHROPIC_API_KEY_FILE gives a key');
  }
  if (defaultProvider === 'openai-compatible' && openaiCompatible === undefined) {
    throw new CaptionConfigError('CAPTION_DEFAULT_PROVIDER is openai-compatible but OPENAI_COMPAT_BASE_URL is empty');
  }

  return {
    defaultProvider,
    anthropic,
    openaiCompatible,
    maxTokens: env.CAPTION_MAX_TOKENS,
    temperature: env.CAPTION_TEMPERATURE,
    concurrency: env.CAPTION_CONCURRENCY,
    maxChars: env.CAPTION_MAX_CHARS,
    request: {
      timeoutMs: env.CAPTION_REQUEST_TIMEOUT_MS,
      maxRetries: env.CAPTION_MAX_RETRIES,
      retryBaseMs: env.CAPTION_RETRY_BASE_MS,
    },
    batch: {
      threshold: env.CAPTION_BATCH_THRESHOLD,
      maxRequests: env.CAPTION_BATCH_MAX_REQUESTS,
      pollMs: env.CAPTION_BATCH_POLL_MS,
    },
  };
}
