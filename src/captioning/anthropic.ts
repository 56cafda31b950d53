// The anthropic captioner: one Messages API request per image through @anthropic-ai/sdk, the
// image as a base64 JPEG block, the caption forced through a strict tool whose input is validated.
// Thinking is off: a forced tool_choice is rejected while the model thinks, and a caption needs
// none. No temperature is sent: SDK 1.x speaks API version 2026-10-21, which answers 400 to any
// sampling parameter (CAPTION_TEMPERATURE applies to the openai-compatible provider only);
// consistency comes from the fixed prompt, the strict schema and the consistency pass.
// The SDK's retries are off (maxRetries: 0); retry.ts retries so that retry-after is honoured
// and attempts are counted. The SDK's own logging and tracing are off: at debug level they
// would print request bodies, image bytes included.
import Anthropic, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from '@anthropic-ai/sdk';
import type { FastifyBaseLogger } from 'fastify';
import { CaptionError, type CaptionImageInput, type CaptionOutcome, type Captioner, type CaptionSubject, type CaptionUsage, type NormalizedCaptions } from './captioner.js';
import { checkCaptionAnswer, checkNormalizeAnswer, type Checked } from './caption-output.js';
import type { CaptionRequestPolicy } from './config.js';
import { prepareForCaption } from './image-preparation.js';
import { addUsage, estimateCostUsd, NO_USAGE } from './pricing.js';
import {
  CAPTION_SCHEMA, CAPTION_TOOL_DESCRIPTION, CAPTION_TOOL_NAME, captionSystemPrompt, captionUserText,
  NORMALIZE_SCHEMA, NORMALIZE_TOOL_DESCRIPTION, NORMALIZE_TOOL_NAME, normalizeSystemPrompt, normalizeUserText, PROMPT_VERSION,
} from './prompts.js';
import { AttemptFailure, failureForStatus, withRetries } from './retry.js';
import { redactText, type Secret } from './secrets.js';

export interface AnthropicCaptionerOptions {
  apiKey: Secret;
  /** undefined = the SDK's default. */
  baseUrl: string | undefined;
  model: string;
  maxTokens: number;
  maxChars: number;
  request: CaptionRequestPolicy;
  logger?: FastifyBaseLogger | undefined;
}

type MessageParams = Anthropic.MessageCreateParamsNonStreaming;

export class AnthropicCaptioner implements Captioner {
  readonly provider = 'anthropic' as const;
  readonly model: string;
  readonly promptVersion = PROMPT_VERSION;
  readonly #client: Anthropic;
  readonly #options: AnthropicCaptionerOptions;

  constructor(options: AnthropicCaptionerOptions) {
    this.model = options.model;
    this.#options = options;
    this.#client = new Anthropic({
      apiKey: options.apiKey.reveal(),
      // Not ANTHROPIC_AUTH_TOKEN from the environment: the key is the only credential.
      authToken: null,
      ...(options.baseUrl !== undefined ? { baseURL: options.baseUrl } : {}),
      maxRetries: 0,
      timeout: options.request.timeoutMs,
      logLevel: 'off',
      openTelemetry: false,
    });
  }

  async caption(image: CaptionImageInput, subject: CaptionSubject, signal: AbortSignal): Promise<CaptionOutcome> {
    const prepared = await prepareForCaption(image, signal);
    const params: MessageParams = {
      model: this.model,
      max_tokens: this.#options.maxTokens,
      system: captionSystemPrompt(subject),
      thinking: { type: 'disabled' },
      tools: [{ name: CAPTION_TOOL_NAME, description: CAPTION_TOOL_DESCRIPTION, input_schema: CAPTION_SCHEMA as unknown as Anthropic.Tool.InputSchema, strict: true }],
      tool_choice: { type: 'tool', name: CAPTION_TOOL_NAME, disable_parallel_tool_use: true },
      messages: [{
        role: 'user',
        content: [
          { type: 'image', source: { type: 'base64', media_type: prepared.mediaType, data: prepared.data.toString('base64') } },
          { type: 'text', text: captionUserText(subject) },
        ],
      }],
    };
    const { value, usage } = await this.#call(params, CAPTION_TOOL_NAME, image.imageId, signal,
      (input) => checkCaptionAnswer(input, subject, this.#options.maxChars));
    return { caption: value, model: this.model, promptVersion: this.promptVersion, usage, costUsd: estimateCostUsd(this.model, usage) };
  }

  async normalize(captions: { imageId: string; caption: string }[], subject: CaptionSubject, signal: AbortSignal): Promise<NormalizedCaptions> {
    if (captions.length === 0) return { captions: [], usage: { ...NO_USAGE }, costUsd: 0 };
    // Short ids instead of image ids: fewer tokens and nothing for the model to mistype.
    const ids = captions.map((_, i) => `c${i + 1}`);
    const params: MessageParams = {
      model: this.model,
      max_tokens: this.#options.maxTokens * Math.max(1, Math.ceil(captions.length / 4)),
      system: normalizeSystemPrompt(subject),
      thinking: { type: 'disabled' },
      tools: [{ name: NORMALIZE_TOOL_NAME, description: NORMALIZE_TOOL_DESCRIPTION, input_schema: NORMALIZE_SCHEMA as unknown as Anthropic.Tool.InputSchema, strict: true }],
      tool_choice: { type: 'tool', name: NORMALIZE_TOOL_NAME, disable_parallel_tool_use: true },
      messages: [{ role: 'user', content: normalizeUserText(captions.map((c, i) => ({ id: ids[i] as string, caption: c.caption }))) }],
    };
    const { value, usage } = await this.#call(params, NORMALIZE_TOOL_NAME, 'normalize', signal,
      (input) => checkNormalizeAnswer(input, ids, subject, this.#options.maxChars));
    return {
      captions: captions.map((c, i) => ({ imageId: c.imageId, caption: value[i] as string })),
      usage,
      costUsd: estimateCostUsd(this.model, usage),
    };
  }

  /** One request with retries; returns the validated tool input and the usage of every answered attempt. */
  async #call<T>(
    params: MessageParams,
    toolName: string,
    subjectId: string,
    signal: AbortSignal,
    check: (input: unknown) => Checked<T>,
  ): Promise<{ value: T; usage: CaptionUsage }> {
    let usage: CaptionUsage = { ...NO_USAGE };
    const value = await withRetries(async () => {
      let message: Anthropic.Message;
      try {
        message = await this.#client.messages.create(params, { signal });
      } catch (err) {
        throw this.#failure(err);
      }
      usage = addUsage(usage, usageOf(message.usage));
      const block = message.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use' && b.name === toolName);
      if (block === undefined) {
        throw new AttemptFailure('invalid_output', `answer has no ${toolName} tool call (stop_reason ${message.stop_reason ?? 'null'})`, false);
      }
      const checked = check(block.input);
      if (!checked.ok) throw new AttemptFailure('invalid_output', `invalid ${toolName} input: ${checked.reason}`, false);
      return checked.value;
    }, this.#options.request, signal, { provider: this.provider, subjectId, logger: this.#options.logger });
    return { value, usage };
  }

  /** Classifies an SDK error; the message is redacted of the key and of any echoed data. */
  #failure(err: unknown): AttemptFailure {
    const safe = (text: string) => redactText(text, [this.#options.apiKey]);
    if (err instanceof APIUserAbortError) return new AttemptFailure('canceled', 'caption request canceled', false);
    if (err instanceof APIConnectionTimeoutError) {
      return new AttemptFailure('timeout', `no answer within ${this.#options.request.timeoutMs} ms`, true);
    }
    if (err instanceof APIConnectionError) return new AttemptFailure('network', safe(`connection failed: ${err.message}`), true);
    if (err instanceof APIError && typeof err.status === 'number') {
      const detail = err.apiMessage ?? err.message;
      return failureForStatus(err.status, safe(`anthropic ${err.status}${err.type ? ` ${err.type}` : ''}: ${detail}`), err.headers ?? undefined);
    }
    return new AttemptFailure('network', safe(`request failed: ${err instanceof Error ? err.message : String(err)}`), true);
  }
}

function usageOf(usage: Anthropic.Usage | undefined): CaptionUsage {
  if (usage === undefined) return { ...NO_USAGE };
  return {
    inputTokens: (usage.input_tokens ?? 0) + (usage.cache_creation_input_tokens ?? 0) + (usage.cache_read_input_tokens ?? 0),
    outputTokens: usage.output_tokens ?? 0,
  };
}
