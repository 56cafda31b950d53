// The anthropic captioner against a local server that speaks the Messages API: the request it
// sends, the retries (429 retry-after, 529, 500), invalid answers, timeouts and cancellation.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, beforeEach, describe, test } from 'node:test';
import Fastify, { type FastifyBaseLogger } from 'fastify';
import sharp from 'sharp';
import { AnthropicCaptioner, type AnthropicCaptionerOptions } from '../../src/captioning/anthropic.js';
import { CaptionError, type CaptionImageInput, type CaptionSubject } from '../../src/captioning/captioner.js';
import { CAPTION_TOOL_NAME, NORMALIZE_TOOL_NAME, PROMPT_VERSION } from '../../src/captioning/prompts.js';
import { Secret } from '../../src/captioning/secrets.js';
import { jpeg } from '../support/images.js';
import { anthropicError, startMockAnthropic, textReply, toolUseReply, type ScriptedServer } from '../support/mock-anthropic.js';
import { captionRejection } from '../support/caption-errors.js';

const KEY = 'sk-ant-test-0123456789abcdef';
const subject: CaptionSubject = { trigger: 'sks', classWord: 'woman' };
const GOOD = 'sks woman, smiling, red knitted sweater, park background, soft daylight, close-up photo';

let server: ScriptedServer;
let image: CaptionImageInput;

function captioner(overrides: Partial<AnthropicCaptionerOptions> = {}): AnthropicCaptioner {
  return new AnthropicCaptioner({
    apiKey: new Secret(KEY),
    baseUrl: server.origin,
    model: 'claude-haiku-5-5',
    maxTokens: 1024,
    maxChars: 1000,
    request: { timeoutMs: 5000, maxRetries: 3, retryBaseMs: 5 },
    ...overrides,
  });
}

function captureLogs(): { logger: FastifyBaseLogger; text: () => string } {
  const lines: string[] = [];
  const stream = new Writable({ write(chunk, _enc, done) { lines.push(String(chunk)); done(); } });
  const app = Fastify({ logger: { level: 'trace', stream } });
  return { logger: app.log, text: () => lines.join('') };
}

before(async () => {
  server = await startMockAnthropic();
  // 2000x1000 stored sideways (EXIF orientation 6): upright it is 1000x2000, so 784x1568 once shrunk.
  image = { imageId: 'img_1', filename: 'a.jpg', sha256: 'x'.repeat(64), bytes: await jpeg({ width: 2000, height: 1000, orientation: 6 }), mediaType: 'image/jpeg' };
});
after(() => server.close());
beforeEach(() => { server.reset(); });

describe('AnthropicCaptioner request', () => {
  test('sends model, system prompt, a downscaled base64 JPEG, a strict tool and a forced tool_choice', async () => {
    server.enqueue(toolUseReply(CAPTION_TOOL_NAME, { caption: `  ${GOOD}\n` }, { input_tokens: 1800, output_tokens: 60 }));
    const outcome = await captioner().caption(image, { ...subject, styleHint: 'short, booru-like tags' }, AbortSignal.timeout(10_000));

    assert.equal(server.requests.length, 1);
    const { headers, body } = server.requests[0]!;
    assert.equal(headers.authorization, `Bearer ${KEY}`, 'SDK 1.x sends the key as a bearer token');
    assert.equal(headers['anthropic-version'], '2026-10-21');
    assert.equal(headers['x-stainless-retry-count'], '0', 'the SDK does not retry on its own');
    assert.equal(body.model, 'claude-haiku-5-5');
    assert.equal(body.max_tokens, 1024);
    assert.equal('temperature' in body, false, 'API 2026-10-21 rejects sampling parameters');
    assert.deepEqual(body.thinking, { type: 'disabled' });
    assert.match(body.system, /"sks woman"/);
    assert.match(body.system, /pose/);
    assert.match(body.system, /Leave out the identity/);

    assert.equal(body.tools.length, 1);
    assert.equal(body.tools[0].name, CAPTION_TOOL_NAME);
    assert.equal(body.tools[0].strict, true);
    assert.deepEqual(body.tools[0].input_schema.required, ['caption']);
    assert.equal(body.tools[0].input_schema.properties.caption.type, 'string');
    assert.deepEqual(body.tool_choice, { type: 'tool', name: CAPTION_TOOL_NAME, disable_parallel_tool_use: true });

    const [imageBlock, textBlock] = body.messages[0].content;
    assert.equal(body.messages[0].role, 'user');
    assert.equal(imageBlock.type, 'image');
    assert.equal(imageBlock.source.type, 'base64');
    assert.equal(imageBlock.source.media_type, 'image/jpeg');
    const sent = await sharp(Buffer.from(imageBlock.source.data, 'base64')).metadata();
    assert.equal(sent.format, 'jpeg');
    assert.deepEqual([sent.width, sent.height], [784, 1568], 'EXIF-rotated, long side 1568');
    assert.equal(textBlock.type, 'text');
    assert.match(textBlock.text, /booru-like tags/);

    assert.equal(outcome.caption, GOOD, 'trimmed');
    assert.equal(outcome.model, 'claude-haiku-5-5');
    assert.equal(outcome.promptVersion, PROMPT_VERSION);
    assert.deepEqual(outcome.usage, { inputTokens: 1800, outputTokens: 60 });
    assert.equal(outcome.costUsd, (1800 * 0.1 + 60 * 0.5) / 1e6);
  });

  test('a small image is sent at its own size', async () => {
    server.enqueue(toolUseReply(CAPTION_TOOL_NAME, { caption: GOOD }));
    const small = { ...image, bytes: await jpeg({ width: 640, height: 480 }) };
    await captioner().caption(small, subject, AbortSignal.timeout(10_000));
    const data = server.requests[0]!.body.messages[0].content[0].source.data;
    const sent = await sharp(Buffer.from(data, 'base64')).metadata();
    assert.deepEqual([sent.width, sent.height], [640, 480]);
  });

  test('an unknown model has no cost estimate', async () => {
    server.enqueue(toolUseReply(CAPTION_TOOL_NAME, { caption: GOOD }));
    const outcome = await captioner({ model: 'claude-some-future-model' }).caption(image, subject, AbortSignal.timeout(10_000));
    assert.equal(outcome.costUsd, null);
  });
});

describe('AnthropicCaptioner retries', () => {
  test('429 waits for retry-after (seconds) before trying again', async () => {
    server.enqueue(anthropicError(429, 'rate_limit_error', 'slow down', { 'retry-after': '1' }), toolUseReply(CAPTION_TOOL_NAME, { caption: GOOD }));
    const outcome = await captioner({ request: { timeoutMs: 5000, maxRetries: 3, retryBaseMs: 1 } }).caption(image, subject, AbortSignal.timeout(10_000));
    assert.equal(outcome.caption, GOOD);
    assert.equal(server.requests.length, 2);
    const waited = server.requests[1]!.receivedAt - server.requests[0]!.receivedAt;
    assert.ok(waited >= 990, `waited ${waited} ms, retry-after asked 1000`);
  });

  test('429 honours retry-after-ms over retry-after', async () => {
    server.enqueue(anthropicError(429, 'rate_limit_error', 'slow down', { 'retry-after-ms': '300', 'retry-after': '30' }), toolUseReply(CAPTION_TOOL_NAME, { caption: GOOD }));
    await captioner({ request: { timeoutMs: 5000, maxRetries: 3, retryBaseMs: 1 } }).caption(image, subject, AbortSignal.timeout(10_000));
    const waited = server.requests[1]!.receivedAt - server.requests[0]!.receivedAt;
    assert.ok(waited >= 295, `waited ${waited} ms, retry-after-ms asked 300`);
    assert.ok(waited < 25_000, 'did not wait for the 30 s retry-after');
  });

  test('529 and 500 are retried, then the answer is used; usage counts answered attempts only', async () => {
    const logs = captureLogs();
    server.enqueue(
      anthropicError(529, 'overloaded_error', 'Overloaded'),
      anthropicError(500, 'api_error', 'Internal server error'),
      toolUseReply(CAPTION_TOOL_NAME, { caption: GOOD }, { input_tokens: 1000, output_tokens: 40 }),
    );
    const outcome = await captioner({ logger: logs.logger }).caption(image, subject, AbortSignal.timeout(10_000));
    assert.equal(outcome.caption, GOOD);
    assert.equal(server.requests.length, 3);
    assert.deepEqual(outcome.usage, { inputTokens: 1000, outputTokens: 40 });
    const retries = logs.text().split('\n').filter((l) => l.includes('retrying')).map((l) => JSON.parse(l));
    assert.deepEqual(retries.map((r) => [r.code, r.status, r.attempt]), [['overloaded', 529, 1], ['server_error', 500, 2]]);
  });

  test('retries exhausted: CaptionError with the last code, status and attempt count', async () => {
    server.enqueue(...Array.from({ length: 3 }, () => anthropicError(529, 'overloaded_error', 'Overloaded')));
    const err = await captionRejection(captioner({ request: { timeoutMs: 5000, maxRetries: 2, retryBaseMs: 1 } }).caption(image, subject, AbortSignal.timeout(10_000)));
    assert.equal(err.code, 'overloaded');
    assert.equal(err.status, 529);
    assert.equal(err.attempts, 3);
    assert.equal(err.retryable, true);
    assert.equal(server.requests.length, 3);
  });

  test('400, 401 and 403 are not retried', async () => {
    for (const [status, type, code] of [[400, 'invalid_request_error', 'bad_request'], [401, 'authentication_error', 'auth'], [403, 'permission_error', 'auth']] as const) {
      server.requests.length = 0;
      server.enqueue(anthropicError(status, type, 'no', { 'x-should-retry': 'true' }));
      const err = await captionRejection(captioner().caption(image, subject, AbortSignal.timeout(10_000)));
      assert.equal(err.code, code);
      assert.equal(err.status, status);
      assert.equal(err.attempts, 1);
      assert.equal(err.retryable, false);
      assert.equal(server.requests.length, 1);
    }
  });

  test('a tool result without a caption is retried once, then recorded as invalid_output', async () => {
    server.enqueue(toolUseReply(CAPTION_TOOL_NAME, {}), toolUseReply(CAPTION_TOOL_NAME, { description: 'a woman' }), toolUseReply(CAPTION_TOOL_NAME, { caption: GOOD }));
    const err = await captionRejection(captioner().caption(image, subject, AbortSignal.timeout(10_000)));
    assert.equal(err.code, 'invalid_output');
    assert.equal(err.attempts, 2);
    assert.equal(err.retryable, false);
    assert.match(err.message, /caption is missing/);
    assert.equal(server.requests.length, 2);
    assert.equal(server.pending, 1, 'the third (valid) answer was never asked for');
  });

  test('a missing caption then a valid one succeeds, with the usage of both answers', async () => {
    server.enqueue(textReply('I cannot help with that.', 'refusal', { input_tokens: 900, output_tokens: 10 }), toolUseReply(CAPTION_TOOL_NAME, { caption: GOOD }, { input_tokens: 1000, output_tokens: 40 }));
    const outcome = await captioner().caption(image, subject, AbortSignal.timeout(10_000));
    assert.equal(outcome.caption, GOOD);
    assert.deepEqual(outcome.usage, { inputTokens: 1900, outputTokens: 50 });
  });

  test('captions that break the rules are invalid: no trigger first, no class word, too long', async () => {
    for (const caption of ['a woman named sks, smiling', 'sks, smiling in a park', `sks woman, ${'very '.repeat(60)}long`]) {
      server.requests.length = 0;
      server.enqueue(toolUseReply(CAPTION_TOOL_NAME, { caption }), toolUseReply(CAPTION_TOOL_NAME, { caption }));
      const err = await captionRejection(captioner({ maxChars: 200 }).caption(image, subject, AbortSignal.timeout(10_000)));
      assert.equal(err.code, 'invalid_output', caption);
      assert.equal(err.attempts, 2);
    }
  });

  test('a response slower than the timeout is a timeout, retried, then given up', async () => {
    server.enqueue(
      { ...toolUseReply(CAPTION_TOOL_NAME, { caption: GOOD }), delayMs: 1500 },
      { ...toolUseReply(CAPTION_TOOL_NAME, { caption: GOOD }), delayMs: 1500 },
    );
    const err = await captionRejection(captioner({ request: { timeoutMs: 200, maxRetries: 1, retryBaseMs: 1 } }).caption(image, subject, AbortSignal.timeout(10_000)));
    assert.equal(err.code, 'timeout');
    assert.equal(err.attempts, 2);
    assert.equal(err.retryable, true);
  });

  test('a slow first answer, then a quick one, succeeds', async () => {
    server.enqueue({ ...toolUseReply(CAPTION_TOOL_NAME, { caption: GOOD }), delayMs: 1500 }, toolUseReply(CAPTION_TOOL_NAME, { caption: GOOD }));
    const outcome = await captioner({ request: { timeoutMs: 300, maxRetries: 1, retryBaseMs: 1 } }).caption(image, subject, AbortSignal.timeout(10_000));
    assert.equal(outcome.caption, GOOD);
  });

  test('aborting the signal cancels an in-flight request', async () => {
    server.enqueue({ ...toolUseReply(CAPTION_TOOL_NAME, { caption: GOOD }), delayMs: 3000 });
    const controller = new AbortController();
    void server.nextRequest().then(() => controller.abort());
    const err = await captionRejection(captioner().caption(image, subject, controller.signal));
    assert.equal(err.code, 'canceled');
    assert.equal(server.requests.length, 1);
  });

  test('aborting the signal cancels the wait for a retry-after', async () => {
    server.enqueue(anthropicError(429, 'rate_limit_error', 'slow down', { 'retry-after': '30' }));
    const controller = new AbortController();
    // Abort once the 429 has been answered and the captioner sits in its 30 s wait.
    void server.nextRequest().then(() => setTimeout(() => controller.abort(), 100));
    const started = performance.now();
    const err = await captionRejection(captioner().caption(image, subject, controller.signal));
    assert.equal(err.code, 'canceled');
    assert.equal(err.attempts, 1);
    assert.ok(performance.now() - started < 10_000, 'did not sit out the 30 s retry-after');
    assert.equal(server.requests.length, 1);
  });

  test('a retry-after beyond the longest allowed wait ends the retries at once', async () => {
    server.enqueue(anthropicError(429, 'rate_limit_error', 'daily limit', { 'retry-after': '3600' }));
    const err = await captionRejection(captioner().caption(image, subject, AbortSignal.timeout(10_000)));
    assert.equal(err.code, 'rate_limited');
    assert.equal(err.attempts, 1);
    assert.equal(err.retryable, true);
  });

  test('an undecodable image is a bad_request without any request', async () => {
    const err = await captionRejection(captioner().caption({ ...image, bytes: Buffer.from('not an image') }, subject, AbortSignal.timeout(10_000)));
    assert.equal(err.code, 'bad_request');
    assert.equal(server.requests.length, 0);
  });
});

describe('AnthropicCaptioner.normalize', () => {
  const captions = [
    { imageId: 'img_a', caption: 'sks woman, grinning, red jumper, in a park, sunny' },
    { imageId: 'img_b', caption: 'sks woman wearing a blue sweater indoors, lamp light, smiling' },
  ];
  const normalized = {
    c1: 'sks woman, smiling, red sweater, park, daylight',
    c2: 'sks woman, smiling, blue sweater, indoors, lamp light',
  };

  test('sends every caption as text under a short id and maps the answer back by id', async () => {
    server.enqueue(toolUseReply(NORMALIZE_TOOL_NAME, { captions: [{ id: 'c2', caption: normalized.c2 }, { id: 'c1', caption: normalized.c1 }] }, { input_tokens: 700, output_tokens: 90 }));
    const result = await captioner().normalize(captions, subject, AbortSignal.timeout(10_000));
    const { body } = server.requests[0]!;
    assert.equal(body.tool_choice.name, NORMALIZE_TOOL_NAME);
    assert.equal(body.tools[0].name, NORMALIZE_TOOL_NAME);
    assert.match(body.system, /"sks woman"/);
    assert.match(body.system, /add none/);
    assert.equal(typeof body.messages[0].content, 'string', 'text only, no images');
    assert.ok(body.messages[0].content.includes(JSON.stringify(captions[0]!.caption)));
    assert.deepEqual(result.captions, [{ imageId: 'img_a', caption: normalized.c1 }, { imageId: 'img_b', caption: normalized.c2 }]);
    assert.deepEqual(result.usage, { inputTokens: 700, outputTokens: 90 });
  });

  test('an answer that drops a caption is retried once, then invalid_output', async () => {
    const partial = toolUseReply(NORMALIZE_TOOL_NAME, { captions: [{ id: 'c1', caption: normalized.c1 }] });
    server.enqueue(partial, partial);
    const err = await captionRejection(captioner().normalize(captions, subject, AbortSignal.timeout(10_000)));
    assert.equal(err.code, 'invalid_output');
    assert.match(err.message, /no caption for c2/);
    assert.equal(err.attempts, 2);
  });

  test('an empty set needs no request', async () => {
    const result = await captioner().normalize([], subject, AbortSignal.timeout(10_000));
    assert.deepEqual(result.captions, []);
    assert.equal(server.requests.length, 0);
  });
});
