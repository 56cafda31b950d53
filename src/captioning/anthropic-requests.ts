// What the anthropic captioner's two ways of asking share (one Messages request per image, and
// the Message Batches API): the SDK client, the Messages request for one image, reading the
// forced tool call out of an answer, the usage, and the classification of SDK errors. A batch
// request is exactly the request sent interactively, so both paths build it here.
import Anthropic, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from '@anthropic-ai/sdk';
import type { CaptionSubject, CaptionUsage } from './captioner.js';
import type { CaptionRequestPolicy } from './config.js';
import type { PreparedImage } from './image-preparation.js';
import { NO_USAGE } from './pricing.js';
import { CAPTION_SCHEMA, CAPTION_TOOL_DESCRIPTION, CAPTION_TOOL_NAME, captionSystemPrompt, captionUserText } from './prompts.js';
import { AttemptFailure, failureForStatus } from './retry.js';
import { redactText, type Secret } from './secrets.js';

export type MessageParams = Anthropic.MessageCreateParamsNonStreaming;

export interface AnthropicClientOptions {
  apiKey: Secret;
  /** undefined = the SDK's default. */
  baseUrl: string | undefined;
  request: CaptionRequestPolicy;
}

/**
 * The SDK client. Its retries are off (maxRetries: 0): retry.ts retries so that retry-after is
 * honoured and attempts are counted. Its logging and tracing are off: at debug level they would
 * print request bodies, image bytes included.
 */
export function createAnthropicClient(options: AnthropicClientOptions): Anthropic {
  return new Anthropic({
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

/** The Messages request that captions one prepared image. */
export function captionParams(model: string, maxTokens: number, subject: CaptionSubject, prepared: PreparedImage): MessageParams {
  return {
    model,
    max_tokens: maxTokens,
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
}

/** The input of the answer's `toolName` call; an invalid_output AttemptFailure when there is none. */
export function toolInput(message: Anthropic.Message, toolName: string): unknown {
  const block = message.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use' && b.name === toolName);
  if (block === undefined) {
    throw new AttemptFailure('invalid_output', `answer has no ${toolName} tool call (stop_reason ${message.stop_reason ?? 'null'})`, false);
  }
  return block.input;
}

export function usageOf(usage: Anthropic.Usage | undefined): CaptionUsage {
  if (usage === undefined) return { ...NO_USAGE };
  return {
    inputTokens: (usage.input_tokens ?? 0) + (usage.cache_creation_input_tokens ?? 0) + (usage.cache_read_input_tokens ?? 0),
    outputTokens: usage.output_tokens ?? 0,
  };
}

/** Classifies an SDK error; the message is redacted of the key and of any echoed data. */
export function anthropicFailure(err: unknown, apiKey: Secret, timeoutMs: number): AttemptFailure {
  const safe = (text: string) => redactText(text, [apiKey]);
  if (err instanceof APIUserAbortError) return new AttemptFailure('canceled', 'caption request canceled', false);
  if (err instanceof APIConnectionTimeoutError) return new AttemptFailure('timeout', `no answer within ${timeoutMs} ms`, true);
  if (err instanceof APIConnectionError) return new AttemptFailure('network', safe(`connection failed: ${err.message}`), true);
  if (err instanceof APIError && typeof err.status === 'number') {
    const detail = err.apiMessage ?? err.message;
    return failureForStatus(err.status, safe(`anthropic ${err.status}${err.type ? ` ${err.type}` : ''}: ${detail}`), err.headers ?? undefined);
  }
  return new AttemptFailure('network', safe(`request failed: ${err instanceof Error ? err.message : String(err)}`), true);
}
