// The openai-compatible captioner against a local chat-completions server: the request it sends
// (data URI image, response_format json_schema, temperature), retries, invalid answers, timeouts.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import sharp from 'sharp';
import { CaptionError, type CaptionImageInput, type CaptionSubject } from '../../src/captioning/captioner.js';
import { OpenAiCompatibleCaptioner, type OpenAiCompatibleCaptionerOptions } from '../../src/captioning/openai-compatible.js';
import { CAPTION_TOOL_NAME, NORMALIZE_TOOL_NAME, PROMPT_VERSION } from '../../src/captioning/prompts.js';
import { Secret } from '../../src/captioning/secrets.js';
import { jpeg } from '../support/images.js';
import type { ScriptedServer } from '../support/mock-anthropic.js';
import { completionReply, openaiError, startMockOpenAi } from '../support/mock-openai.js';
import { captionRejection } from '../support/caption-errors.js';

const KEY = 'vllm-key-abcdef0123456789';
const subject: CaptionSubject = { trigger: 'ohwx', classWord: 'dog' };
const GOOD = 'ohwx dog, lying on a wooden floor, looking at the camera, window light, wide shot';

let server: ScriptedServer;
let image: CaptionImageInput;

function captioner(overrides: Partial<OpenAiCompatibleCaptionerOptions> = {}): OpenAiCompatibleCaptioner {
  return new OpenAiCompatibleCaptioner({
    baseUrl: `${server.origin}/v1/`,
    apiKey: new Secret(KEY),
    model: 'Qwen/Qwen2.5-VL-7B-Instruct',
    maxTokens: 512,
    temperature: 0,
    maxChars: 1000,
    request: { timeoutMs: 5000, maxRetries: 3, retryBaseMs: 5 },
    ...overrides,
  });
}

before(async () => {
  server = await startMockOpenAi(KEY);
  image = { imageId: 'img_1', filename: 'dog.png', sha256: 'y'.repeat(64), bytes: await jpeg({ width: 3000, height: 2000 }), mediaType: 'image/jpeg' };
});
after(() => server.close());
beforeEach(() => { server.reset(); });

describe('OpenAiCompatibleCaptioner request', () => {
  test('sends model, temperature, system prompt, a JPEG data URI and a json_schema response_format', async () => {
    server.enqueue(completionReply(JSON.stringify({ caption: GOOD }), { prompt_tokens: 1300, completion_tokens: 45 }));
    const outcome = await captioner().caption(image, subject, AbortSignal.timeout(10_000));

    assert.equal(server.requests.length, 1);
    const { path, headers, body } = server.requests[0]!;
    assert.equal(path, '/v1/chat/completions');
    assert.equal(headers.authorization, `Bearer ${KEY}`);
    assert.equal(body.model, 'Qwen/Qwen2.5-VL-7B-Instruct');
    assert.equal(body.temperature, 0);
    assert.equal(body.max_tokens, 512);
    assert.equal(body.messages[0].role, 'system');
    assert.match(body.messages[0].content, /"ohwx dog"/);
    assert.equal(body.response_format.type, 'json_schema');
    assert.equal(body.response_format.json_schema.name, CAPTION_TOOL_NAME);
    assert.equal(body.response_format.json_schema.strict, true);
    assert.deepEqual(body.response_format.json_schema.schema.required, ['caption']);

    const [imagePart, textPart] = body.messages[1].content;
    assert.equal(imagePart.type, 'image_url');
    const match = /^data:image\/jpeg;base64,(.+)$/.exec(imagePart.image_url.url);
    assert.ok(match, 'a JPEG data URI');
    const sent = await sharp(Buffer.from(match[1]!, 'base64')).metadata();
    assert.equal(sent.format, 'jpeg');
    assert.deepEqual([sent.width, sent.height], [1568, 1045]);
    assert.equal(textPart.type, 'text');

    assert.equal(outcome.caption, GOOD);
    assert.equal(outcome.promptVersion, PROMPT_VERSION);
    assert.deepEqual(outcome.usage, { inputTokens: 1300, outputTokens: 45 });
    assert.equal(outcome.costUsd, null, 'self-hosted: no price');
  });

  test('without a key no Authorization header is sent', async () => {
    const open = await startMockOpenAi();
    try {
      open.enqueue(completionReply(JSON.stringify({ caption: GOOD })));
      const c = new OpenAiCompatibleCaptioner({
        baseUrl: `${open.origin}/v1`, apiKey: undefined, model: 'm', maxTokens: 256, temperature: 0.2, maxChars: 1000,
        request: { timeoutMs: 5000, maxRetries: 0, retryBaseMs: 1 },
      });
      await c.caption(image, subject, AbortSignal.timeout(10_000));
      assert.equal(open.requests[0]!.headers.authorization, undefined);
      assert.equal(open.requests[0]!.body.temperature, 0.2);
    } finally {
      await open.close();
    }
  });
});

describe('OpenAiCompatibleCaptioner retries', () => {
  test('429 waits for retry-after before trying again', async () => {
    server.enqueue(openaiError(429, 'rate limited', { 'retry-after': '1' }), completionReply(JSON.stringify({ caption: GOOD })));
    await captioner({ request: { timeoutMs: 5000, maxRetries: 2, retryBaseMs: 1 } }).caption(image, subject, AbortSignal.timeout(10_000));
    const waited = server.requests[1]!.receivedAt - server.requests[0]!.receivedAt;
    assert.ok(waited >= 990, `waited ${waited} ms, retry-after asked 1000`);
  });

  test('503 and 500 are retried, then the answer is used', async () => {
    server.enqueue(openaiError(503, 'loading model'), openaiError(500, 'oops'), completionReply(JSON.stringify({ caption: GOOD })));
    const outcome = await captioner().caption(image, subject, AbortSignal.timeout(10_000));
    assert.equal(outcome.caption, GOOD);
    assert.equal(server.requests.length, 3);
  });

  test('retries exhausted: CaptionError with attempts and status', async () => {
    server.enqueue(openaiError(502, 'bad gateway'), openaiError(502, 'bad gateway'));
    const err = await captionRejection(captioner({ request: { timeoutMs: 5000, maxRetries: 1, retryBaseMs: 1 } }).caption(image, subject, AbortSignal.timeout(10_000)));
    assert.equal(err.code, 'server_error');
    assert.equal(err.status, 502);
    assert.equal(err.attempts, 2);
  });

  test('a wrong key is auth, not retried, and the message does not repeat the key', async () => {
    const c = captioner({ apiKey: new Secret('wrong-key-987654321') });
    const err = await captionRejection(c.caption(image, subject, AbortSignal.timeout(10_000)));
    assert.equal(err.code, 'auth');
    assert.equal(err.attempts, 1);
    assert.match(err.message, /Incorrect API key provided: \[redacted\]/);
  });

  test('content that is not the JSON asked for is retried once, then invalid_output', async () => {
    server.enqueue(completionReply('Here is a caption: a dog'), completionReply(JSON.stringify({ text: GOOD })));
    const err = await captionRejection(captioner().caption(image, subject, AbortSignal.timeout(10_000)));
    assert.equal(err.code, 'invalid_output');
    assert.equal(err.attempts, 2);
    assert.match(err.message, /caption is missing/);
  });

  test('empty content (length cut) then a valid answer succeeds with both usages', async () => {
    server.enqueue(completionReply(null, { prompt_tokens: 1000, completion_tokens: 512 }, 'length'), completionReply(JSON.stringify({ caption: GOOD }), { prompt_tokens: 1000, completion_tokens: 40 }));
    const outcome = await captioner().caption(image, subject, AbortSignal.timeout(10_000));
    assert.equal(outcome.caption, GOOD);
    assert.deepEqual(outcome.usage, { inputTokens: 2000, outputTokens: 552 });
  });

  test('a response slower than the timeout is a timeout after the retries', async () => {
    server.enqueue({ ...completionReply(JSON.stringify({ caption: GOOD })), delayMs: 1500 }, { ...completionReply(JSON.stringify({ caption: GOOD })), delayMs: 1500 });
    const err = await captionRejection(captioner({ request: { timeoutMs: 200, maxRetries: 1, retryBaseMs: 1 } }).caption(image, subject, AbortSignal.timeout(10_000)));
    assert.equal(err.code, 'timeout');
    assert.equal(err.attempts, 2);
  });

  test('a refused connection is a network error, retried', async () => {
    const gone = await startMockOpenAi();
    const origin = gone.origin;
    await gone.close();
    const c = captioner({ baseUrl: `${origin}/v1`, request: { timeoutMs: 2000, maxRetries: 1, retryBaseMs: 1 } });
    const err = await captionRejection(c.caption(image, subject, AbortSignal.timeout(10_000)));
    assert.equal(err.code, 'network');
    assert.equal(err.attempts, 2);
    assert.equal(err.retryable, true);
  });

  test('aborting the signal cancels an in-flight request', async () => {
    server.enqueue({ ...completionReply(JSON.stringify({ caption: GOOD })), delayMs: 3000 });
    const controller = new AbortController();
    void server.nextRequest().then(() => controller.abort());
    const err = await captionRejection(captioner().caption(image, subject, controller.signal));
    assert.equal(err.code, 'canceled');
  });
});

describe('OpenAiCompatibleCaptioner.normalize', () => {
  test('sends the captions as JSON text and maps the answer back by id', async () => {
    const captions = [
      { imageId: 'a', caption: 'ohwx dog on grass, sunny, running' },
      { imageId: 'b', caption: 'ohwx dog, sofa, sleeping, evening lamp' },
    ];
    server.enqueue(completionReply(JSON.stringify({ captions: [
      { id: 'c1', caption: 'ohwx dog, running, grass, sunlight' },
      { id: 'c2', caption: 'ohwx dog, sleeping, sofa, lamp light' },
    ] })));
    const result = await captioner().normalize(captions, subject, AbortSignal.timeout(10_000));
    const { body } = server.requests[0]!;
    assert.equal(body.response_format.json_schema.name, NORMALIZE_TOOL_NAME);
    assert.ok(body.messages[1].content.includes(JSON.stringify(captions[1]!.caption)));
    assert.deepEqual(result.captions, [{ imageId: 'a', caption: 'ohwx dog, running, grass, sunlight' }, { imageId: 'b', caption: 'ohwx dog, sleeping, sofa, lamp light' }]);
    assert.equal(result.costUsd, null);
  });
});
