// The anthropic captioner: one Messages API request per image through @anthropic-ai/sdk, the
// image as a base64 JPEG block, the caption forced through a strict tool whose input is validated.
// Thinking is off: a forced tool_choice is rejected while the model thinks, and a caption needs
// none. No temperature is sent: SDK 1.x speaks API version 2026-10-21, which answers 400 to any
// sampling parameter (CAPTION_TEMPERATURE applies to the openai-compatible provider only);
// consistency comes from the fixed prompt, the strict schema and the consistency pass.
// The client and the request for one image are built in anthropic-requests.ts, shared with
// the Message Batches path (anthropic-batches.ts), which sends the same requests at half price.
import type Anthropic from '@anthropic-ai/sdk';
import type { FastifyBaseLogger } from 'fastify';
import { AnthropicCaptionBatches } from './anthropic-batches.js';
import { anthropicFailure, captionParams, createAnthropicClient, toolInput, usageOf, type MessageParams } from './anthropic-requests.js';
import type { CaptionImageInput, CaptionOutcome, Captioner, CaptionSubject, CaptionUsage, NormalizedCaptions } from './captioner.js';
import { checkCaptionAnswer, checkNormalizeAnswer, type Checked } from './caption-output.js';
import type { CaptionRequestPolicy } from './config.js';
import { prepareForCaption } from './image-preparation.js';
import { addUsage, estimateCostUsd, NO_USAGE } from './pricing.js';
import {
  CAPTION_TOOL_NAME, NORMALIZE_SCHEMA, NORMALIZE_TOOL_DESCRIPTION, NORMALIZE_TOOL_NAME, normalizeSystemPrompt, normalizeUserText, PROMPT_VERSION,
} from './prompts.js';
import { AttemptFailure, withRetries } from './retry.js';
import type { Secret } from './secrets.js';

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

export class AnthropicCaptioner implements Captioner {
  readonly provider = 'anthropic' as const;
  readonly model: string;
  readonly promptVersion = PROMPT_VERSION;
  /** The Message Batches API: the same requests at half the price, answered within 24 h. */
  readonly batches: AnthropicCaptionBatches;
  readonly #client: Anthropic;
  readonly #options: AnthropicCaptionerOptions;

  constructor(options: AnthropicCaptionerOptions) {
    this.model = options.model;
    this.#options = options;
    this.#client = createAnthropicClient(options);
    this.batches = new AnthropicCaptionBatches(this.#client, options);
  }

  async caption(image: CaptionImageInput, subject: CaptionSubject, signal: AbortSignal): Promise<CaptionOutcome> {
    const prepared = await prepareForCaption(image, signal);
    const params = captionParams(this.model, this.#options.maxTokens, subject, prepared);
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
        throw anthropicFailure(err, this.#options.apiKey, this.#options.request.timeoutMs);
      }
      usage = addUsage(usage, usageOf(message.usage));
      const checked = check(toolInput(message, toolName));
      if (!checked.ok) throw new AttemptFailure('invalid_output', `invalid ${toolName} input: ${checked.reason}`, false);
      return checked.value;
    }, this.#options.request, signal, { provider: this.provider, subjectId, logger: this.#options.logger });
    return { value, usage };
  }
}
