// The anthropic captioner's Message Batches API (client.messages.batches): the same Messages
// request as one image's interactive caption (anthropic-requests.ts), many per batch, at half
// the price, answered within 24 hours. Results stream from the batch's results_url as JSONL
// and are checked like an interactive answer; an errored result is classified like the HTTP
// error the same request would have got on its own.
import type Anthropic from '@anthropic-ai/sdk';
import { anthropicFailure, captionParams, toolInput, usageOf, type MessageParams } from './anthropic-requests.js';
import {
  CaptionError, type BatchItemResult, type BatchRequest, type BatchState, type CaptionBatches, type CaptionImageInput, type CaptionSubject,
} from './captioner.js';
import { checkCaptionAnswer } from './caption-output.js';
import type { CaptionRequestPolicy } from './config.js';
import { prepareForCaption } from './image-preparation.js';
import { estimateCostUsd, NO_USAGE } from './pricing.js';
import { CAPTION_TOOL_NAME, PROMPT_VERSION } from './prompts.js';
import { AttemptFailure, failureForStatus } from './retry.js';
import type { Secret } from './secrets.js';

/** The API refuses a batch body over 256 MB; half of it keeps a margin and bounds the memory one submission holds. */
export const ANTHROPIC_MAX_BATCH_BYTES = 128 * 1024 * 1024;

/** HTTP status of each error type an errored result can carry (the status the request would have got alone). */
const ERROR_STATUS: Record<string, number> = {
  invalid_request_error: 400,
  authentication_error: 401,
  billing_error: 402,
  permission_error: 403,
  not_found_error: 404,
  request_too_large: 413,
  rate_limit_error: 429,
  api_error: 500,
  timeout_error: 504,
  overloaded_error: 529,
};

export interface AnthropicBatchOptions {
  apiKey: Secret;
  model: string;
  maxTokens: number;
  maxChars: number;
  request: CaptionRequestPolicy;
}

export class AnthropicCaptionBatches implements CaptionBatches {
  readonly maxBatchBytes = ANTHROPIC_MAX_BATCH_BYTES;
  readonly #client: Anthropic;
  readonly #options: AnthropicBatchOptions;

  constructor(client: Anthropic, options: AnthropicBatchOptions) {
    this.#client = client;
    this.#options = options;
  }

  async request(customId: string, image: CaptionImageInput, subject: CaptionSubject, signal: AbortSignal): Promise<BatchRequest> {
    const prepared = await prepareForCaption(image, signal);
    const params = captionParams(this.#options.model, this.#options.maxTokens, subject, prepared);
    return { customId, params, bytes: Buffer.byteLength(JSON.stringify({ custom_id: customId, params })) };
  }

  async submit(requests: readonly BatchRequest[]): Promise<BatchState> {
    const batch = await this.#api(() => this.#client.messages.batches.create({
      requests: requests.map((r) => ({ custom_id: r.customId, params: r.params as MessageParams })),
    }));
    return stateOf(batch);
  }

  async retrieve(providerBatchId: string): Promise<BatchState> {
    return stateOf(await this.#api(() => this.#client.messages.batches.retrieve(providerBatchId)));
  }

  async cancel(providerBatchId: string): Promise<BatchState> {
    return stateOf(await this.#api(() => this.#client.messages.batches.cancel(providerBatchId)));
  }

  async *results(providerBatchId: string, subject: CaptionSubject, signal: AbortSignal): AsyncIterable<BatchItemResult> {
    const lines = await this.#api(() => this.#client.messages.batches.results(providerBatchId, {}, { signal }));
    try {
      for await (const line of lines) yield this.#resultOf(line, subject);
    } catch (err) {
      throw toCaptionError(anthropicFailure(err, this.#options.apiKey, this.#options.request.timeoutMs));
    }
  }

  #resultOf(line: Anthropic.Messages.MessageBatchIndividualResponse, subject: CaptionSubject): BatchItemResult {
    const { custom_id: customId, result } = line;
    const failed = (failure: AttemptFailure, usage = { ...NO_USAGE }): BatchItemResult => ({
      customId, ok: false, error: toCaptionError(failure), usage, costUsd: this.#cost(usage),
    });
    switch (result.type) {
      case 'succeeded': {
        const usage = usageOf(result.message.usage);
        let input: unknown;
        try {
          input = toolInput(result.message, CAPTION_TOOL_NAME);
        } catch (err) {
          return failed(err as AttemptFailure, usage);
        }
        const checked = checkCaptionAnswer(input, subject, this.#options.maxChars);
        if (!checked.ok) return failed(new AttemptFailure('invalid_output', `invalid ${CAPTION_TOOL_NAME} input: ${checked.reason}`, false), usage);
        return {
          customId,
          ok: true,
          outcome: { caption: checked.value, model: this.#options.model, promptVersion: PROMPT_VERSION, usage, costUsd: this.#cost(usage) },
        };
      }
      case 'errored': {
        const { type, message } = result.error.error;
        return failed(failureForStatus(ERROR_STATUS[type] ?? 500, `anthropic batch ${type}: ${message}`, undefined));
      }
      case 'canceled':
        return failed(new AttemptFailure('canceled', 'the batch was canceled before this request ran', true));
      case 'expired':
        return failed(new AttemptFailure('expired', 'the batch expired before this request ran', true));
    }
  }

  #cost(usage: { inputTokens: number; outputTokens: number }): number | null {
    return estimateCostUsd(this.#options.model, usage, { batch: true });
  }

  /** One call of the batches API; a failure becomes a CaptionError (the worker tries again on its next poll). */
  async #api<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw toCaptionError(anthropicFailure(err, this.#options.apiKey, this.#options.request.timeoutMs));
    }
  }
}

function toCaptionError(failure: AttemptFailure): CaptionError {
  return new CaptionError(failure.code, failure.message, {
    retryable: failure.retryable,
    attempts: 1,
    ...(failure.status !== undefined ? { status: failure.status } : {}),
  });
}

function stateOf(batch: Anthropic.Messages.MessageBatch): BatchState {
  return { providerBatchId: batch.id, status: batch.processing_status, counts: { ...batch.request_counts } };
}
