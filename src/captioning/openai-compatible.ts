// The openai-compatible captioner: the chat-completions protocol (POST {base}/chat/completions)
// for self-hosted vision models (vLLM, SGLang, llama.cpp server, Ollama, LM Studio), the image as
// a JPEG data URI. Structured output through response_format json_schema (strict) rather than
// forced function calling: every one of those servers constrains decoding to the schema with it,
// while a named tool_choice is ignored by some. The answer is validated like the anthropic one.
import type { FastifyBaseLogger } from 'fastify';
import { type CaptionImageInput, type CaptionOutcome, type Captioner, type CaptionSubject, type CaptionUsage, type NormalizedCaptions } from './captioner.js';
import { checkCaptionAnswer, checkNormalizeAnswer, type Checked } from './caption-output.js';
import type { CaptionRequestPolicy } from './config.js';
import { prepareForCaption } from './image-preparation.js';
import { addUsage, NO_USAGE } from './pricing.js';
import {
  CAPTION_SCHEMA, CAPTION_TOOL_NAME, captionSystemPrompt, captionUserText,
  NORMALIZE_SCHEMA, NORMALIZE_TOOL_NAME, normalizeSystemPrompt, normalizeUserText, PROMPT_VERSION,
} from './prompts.js';
import { AttemptFailure, failureForStatus, withRetries } from './retry.js';
import { redactText, type Secret } from './secrets.js';

export interface OpenAiCompatibleCaptionerOptions {
  /** e.g. http://vllm:8000/v1 */
  baseUrl: string;
  apiKey: Secret | undefined;
  model: string;
  maxTokens: number;
  temperature: number;
  maxChars: number;
  request: CaptionRequestPolicy;
  logger?: FastifyBaseLogger | undefined;
}

type ChatContentPart = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } };

interface ChatRequest {
  model: string;
  messages: { role: 'system' | 'user'; content: string | ChatContentPart[] }[];
  max_tokens: number;
  temperature: number;
  response_format: { type: 'json_schema'; json_schema: { name: string; schema: unknown; strict: true } };
}

/** The parts of a chat.completion answer that are read. */
interface ChatCompletion {
  choices?: { message?: { content?: string | null; refusal?: string | null }; finish_reason?: string | null }[];
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
}

export class OpenAiCompatibleCaptioner implements Captioner {
  readonly provider = 'openai-compatible' as const;
  readonly model: string;
  readonly promptVersion = PROMPT_VERSION;
  readonly #options: OpenAiCompatibleCaptionerOptions;
  readonly #url: string;

  constructor(options: OpenAiCompatibleCaptionerOptions) {
    this.model = options.model;
    this.#options = options;
    this.#url = `${options.baseUrl.replace(/\/+$/, '')}/chat/completions`;
  }

  async caption(image: CaptionImageInput, subject: CaptionSubject, signal: AbortSignal): Promise<CaptionOutcome> {
    const prepared = await prepareForCaption(image, signal);
    const body: ChatRequest = {
      model: this.model,
      messages: [
        { role: 'system', content: captionSystemPrompt(subject) },
        {
          role: 'user',
          content: [
            { type: 'image_url', image_url: { url: `data:${prepared.mediaType};base64,${prepared.data.toString('base64')}` } },
            { type: 'text', text: captionUserText(subject) },
          ],
        },
      ],
      max_tokens: this.#options.maxTokens,
      temperature: this.#options.temperature,
      response_format: { type: 'json_schema', json_schema: { name: CAPTION_TOOL_NAME, schema: CAPTION_SCHEMA, strict: true } },
    };
    const { value, usage } = await this.#call(body, image.imageId, signal,
      (answer) => checkCaptionAnswer(answer, subject, this.#options.maxChars));
    // Self-hosted: no list price to estimate from.
    return { caption: value, model: this.model, promptVersion: this.promptVersion, usage, costUsd: null };
  }

  async normalize(captions: { imageId: string; caption: string }[], subject: CaptionSubject, signal: AbortSignal): Promise<NormalizedCaptions> {
    if (captions.length === 0) return { captions: [], usage: { ...NO_USAGE }, costUsd: null };
    const ids = captions.map((_, i) => `c${i + 1}`);
    const body: ChatRequest = {
      model: this.model,
      messages: [
        { role: 'system', content: normalizeSystemPrompt(subject) },
        { role: 'user', content: normalizeUserText(captions.map((c, i) => ({ id: ids[i] as string, caption: c.caption }))) },
      ],
      max_tokens: this.#options.maxTokens * Math.max(1, Math.ceil(captions.length / 4)),
      temperature: this.#options.temperature,
      response_format: { type: 'json_schema', json_schema: { name: NORMALIZE_TOOL_NAME, schema: NORMALIZE_SCHEMA, strict: true } },
    };
    const { value, usage } = await this.#call(body, 'normalize', signal,
      (answer) => checkNormalizeAnswer(answer, ids, subject, this.#options.maxChars));
    return { captions: captions.map((c, i) => ({ imageId: c.imageId, caption: value[i] as string })), usage, costUsd: null };
  }

  async #call<T>(body: ChatRequest, subjectId: string, signal: AbortSignal, check: (answer: unknown) => Checked<T>): Promise<{ value: T; usage: CaptionUsage }> {
    const payload = JSON.stringify(body);
    let usage: CaptionUsage = { ...NO_USAGE };
    const value = await withRetries(async () => {
      const completion = await this.#post(payload, signal);
      usage = addUsage(usage, {
        inputTokens: completion.usage?.prompt_tokens ?? 0,
        outputTokens: completion.usage?.completion_tokens ?? 0,
      });
      const choice = completion.choices?.[0];
      const content = choice?.message?.content;
      if (typeof content !== 'string' || content.trim() === '') {
        throw new AttemptFailure('invalid_output', `answer has no content (finish_reason ${choice?.finish_reason ?? 'null'})`, false);
      }
      let answer: unknown;
      try {
        answer = JSON.parse(content);
      } catch {
        throw new AttemptFailure('invalid_output', `answer is not JSON (finish_reason ${choice?.finish_reason ?? 'null'})`, false);
      }
      const checked = check(answer);
      if (!checked.ok) throw new AttemptFailure('invalid_output', `invalid answer: ${checked.reason}`, false);
      return checked.value;
    }, this.#options.request, signal, { provider: this.provider, subjectId, logger: this.#options.logger });
    return { value, usage };
  }

  /** One HTTP request, bounded by the request timeout (headers and body); failures classified. */
  async #post(payload: string, signal: AbortSignal): Promise<ChatCompletion> {
    const timeout = AbortSignal.timeout(this.#options.request.timeoutMs);
    const combined = AbortSignal.any([signal, timeout]);
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json' };
    const key = this.#options.apiKey;
    if (key !== undefined) headers.authorization = `Bearer ${key.reveal()}`;
    try {
      const response = await fetch(this.#url, { method: 'POST', headers, body: payload, signal: combined });
      const text = await response.text();
      if (!response.ok) {
        throw failureForStatus(response.status, this.#safe(`${response.status}: ${errorDetail(text)}`), response.headers);
      }
      try {
        return JSON.parse(text) as ChatCompletion;
      } catch {
        throw new AttemptFailure('invalid_output', 'answer body is not JSON', false);
      }
    } catch (err) {
      if (err instanceof AttemptFailure) throw err;
      if (signal.aborted) throw new AttemptFailure('canceled', 'caption request canceled', false);
      if (timeout.aborted) throw new AttemptFailure('timeout', `no answer within ${this.#options.request.timeoutMs} ms`, true);
      const cause = err instanceof Error && err.cause instanceof Error ? ` (${err.cause.message})` : '';
      throw new AttemptFailure('network', this.#safe(`connection failed: ${err instanceof Error ? err.message : String(err)}${cause}`), true);
    }
  }

  #safe(text: string): string {
    return redactText(text, [this.#options.apiKey]);
  }
}

/** The message of an OpenAI-style error body ({error:{message}}, {message} or {detail}), else the raw text. */
function errorDetail(text: string): string {
  try {
    const body = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown; detail?: unknown };
    if (typeof body.error === 'object' && typeof body.error?.message === 'string') return body.error.message;
    if (typeof body.error === 'string') return body.error;
    if (typeof body.message === 'string') return body.message;
    if (typeof body.detail === 'string') return body.detail;
  } catch {
    // not JSON: fall through to the text itself
  }
  return text;
}
