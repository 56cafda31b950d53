// CaptionEnvProperties defaults, captionConfigFromEnv (provider choice, key files) and the
// registry createCaptioners builds; keys never show in logs, JSON, inspect or errors.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { inspect } from 'node:util';
import { after, before, describe, test } from 'node:test';
import Fastify from 'fastify';
import { Type } from 'typebox';
import { Value } from 'typebox/value';
import {
  CaptionConfigError, CaptionEnvProperties, captionConfigFromEnv, CaptionError, createCaptioners, DEFAULT_ANTHROPIC_MODEL,
  SecretFileError, type CaptionEnv,
} from '../../src/captioning/index.js';
import { CAPTION_TOOL_NAME } from '../../src/captioning/prompts.js';
import { jpeg } from '../support/images.js';
import { anthropicError, startMockAnthropic, toolUseReply, type ScriptedServer } from '../support/mock-anthropic.js';

const CaptionEnvSchema = Type.Object(CaptionEnvProperties);

/** The env as src/config.ts produces it: defaults applied, strings converted. */
function env(vars: Record<string, string> = {}): CaptionEnv {
  const converted = Value.Convert(CaptionEnvSchema, Value.Default(CaptionEnvSchema, { ...vars }));
  assert.ok(Value.Check(CaptionEnvSchema, converted), [...Value.Errors(CaptionEnvSchema, converted)].map((e) => e.message).join('; '));
  return converted as CaptionEnv;
}

let dir: string;
before(async () => { dir = await mkdtemp(path.join(tmpdir(), 'captioning-config-')); });
after(() => rm(dir, { recursive: true, force: true }));

describe('CaptionEnvProperties', () => {
  test('defaults', () => {
    const e = env();
    assert.equal(e.ANTHROPIC_API_KEY, '');
    assert.equal(e.CAPTION_ANTHROPIC_MODEL, DEFAULT_ANTHROPIC_MODEL);
    assert.equal(e.CAPTION_MAX_TOKENS, 1024);
    assert.equal(e.CAPTION_TEMPERATURE, 0);
    assert.equal(e.CAPTION_CONCURRENCY, 4);
    assert.equal(e.CAPTION_REQUEST_TIMEOUT_MS, 60_000);
    assert.equal(e.CAPTION_MAX_RETRIES, 4);
    assert.equal(e.CAPTION_RETRY_BASE_MS, 500);
    assert.equal(e.CAPTION_MAX_CHARS, 1000);
    assert.equal(e.CAPTION_DEFAULT_PROVIDER, '');
  });

  test('rejects an unknown default provider and out-of-range numbers', () => {
    for (const vars of [{ CAPTION_DEFAULT_PROVIDER: 'gpt' }, { CAPTION_TEMPERATURE: '1.5' }, { CAPTION_CONCURRENCY: '0' }]) {
      const converted = Value.Convert(CaptionEnvSchema, Value.Default(CaptionEnvSchema, vars));
      assert.equal(Value.Check(CaptionEnvSchema, converted), false, JSON.stringify(vars));
    }
  });
});

describe('captionConfigFromEnv', () => {
  test('without keys only the template provider is configured, and it is the default', () => {
    const config = captionConfigFromEnv(env());
    assert.equal(config.defaultProvider, 'template');
    const registry = createCaptioners(config);
    assert.deepEqual(registry.configured(), ['template']);
    assert.equal(registry.get('anthropic'), undefined);
    assert.equal(registry.get('openai-compatible'), undefined);
    assert.equal(registry.get('template')?.model, 'template');
  });

  test('an Anthropic key makes anthropic the default; a base URL turns openai-compatible on', () => {
    const config = captionConfigFromEnv(env({ ANTHROPIC_API_KEY: 'sk-ant-x', OPENAI_COMPAT_BASE_URL: 'http://vllm:8000/v1', OPENAI_COMPAT_MODEL: 'llava' }));
    assert.equal(config.defaultProvider, 'anthropic');
    const registry = createCaptioners(config);
    assert.deepEqual(registry.configured(), ['anthropic', 'openai-compatible', 'template']);
    assert.equal(registry.get('anthropic')?.model, DEFAULT_ANTHROPIC_MODEL);
    assert.equal(registry.get('openai-compatible')?.model, 'llava');
  });

  test('CAPTION_DEFAULT_PROVIDER is honoured, and must name a configured provider', () => {
    assert.equal(captionConfigFromEnv(env({ ANTHROPIC_API_KEY: 'k', CAPTION_DEFAULT_PROVIDER: 'template' })).defaultProvider, 'template');
    assert.throws(() => captionConfigFromEnv(env({ CAPTION_DEFAULT_PROVIDER: 'anthropic' })), CaptionConfigError);
    assert.throws(() => captionConfigFromEnv(env({ CAPTION_DEFAULT_PROVIDER: 'openai-compatible' })), CaptionConfigError);
  });

  test('the key comes from the file when the variable is empty, trimmed', async () => {
    const file = path.join(dir, 'anthropic-key');
    await writeFile(file, '  sk-ant-from-file-42\n');
    const config = captionConfigFromEnv(env({ ANTHROPIC_API_KEY_FILE: file }));
    assert.equal(config.anthropic?.apiKey.reveal(), 'sk-ant-from-file-42');
    const direct = captionConfigFromEnv(env({ ANTHROPIC_API_KEY: 'sk-ant-direct', ANTHROPIC_API_KEY_FILE: file }));
    assert.equal(direct.anthropic?.apiKey.reveal(), 'sk-ant-direct', 'the variable wins over the file');
  });

  test('a missing or empty key file is an error that names the variable and not the content', async () => {
    assert.throws(() => captionConfigFromEnv(env({ ANTHROPIC_API_KEY_FILE: path.join(dir, 'nope') })), (err: Error) =>
      err instanceof SecretFileError && /ANTHROPIC_API_KEY_FILE/.test(err.message) && /ENOENT/.test(err.message));
    const empty = path.join(dir, 'empty');
    await writeFile(empty, '\n');
    assert.throws(() => captionConfigFromEnv(env({ OPENAI_COMPAT_BASE_URL: 'http://x/v1', OPENAI_COMPAT_API_KEY_FILE: empty })), SecretFileError);
  });

  test('the config shows no key through JSON or inspect', () => {
    const config = captionConfigFromEnv(env({ ANTHROPIC_API_KEY: 'sk-ant-secret-1234', OPENAI_COMPAT_BASE_URL: 'http://x/v1', OPENAI_COMPAT_API_KEY: 'oa-secret-5678' }));
    for (const text of [JSON.stringify(config), inspect(config, { depth: 10 }), `${config.anthropic?.apiKey}`]) {
      assert.ok(!text.includes('sk-ant-secret-1234') && !text.includes('oa-secret-5678'), text);
      assert.match(text, /\[redacted\]/);
    }
  });
});

describe('keys and image bytes stay out of the logs', () => {
  let server: ScriptedServer;
  before(async () => { server = await startMockAnthropic(); });
  after(() => server.close());

  test('a key file is sent as the credential; retries, invalid answers and failures log neither key nor image', async () => {
    const key = 'sk-ant-file-key-ABCDEF123456';
    const file = path.join(dir, 'key-for-logs');
    await writeFile(file, `${key}\n`);
    const lines: string[] = [];
    const app = Fastify({ logger: { level: 'trace', stream: new Writable({ write(chunk, _e, done) { lines.push(String(chunk)); done(); } }) } });
    const config = captionConfigFromEnv(env({
      ANTHROPIC_API_KEY_FILE: file, ANTHROPIC_BASE_URL: server.origin, CAPTION_RETRY_BASE_MS: '1', CAPTION_MAX_RETRIES: '2',
    }));
    const anthropic = createCaptioners(config, { logger: app.log }).get('anthropic');
    assert.ok(anthropic);

    const bytes = await jpeg({ width: 300, height: 300 });
    const image = { imageId: 'img_log', filename: 'x.jpg', sha256: 'z'.repeat(64), bytes, mediaType: 'image/jpeg' };
    const subject = { trigger: 'sks', classWord: 'man' };
    // The server echoes the key and a long base64 run in its error text, as a careless proxy might.
    const echo = `key ${key} body ${bytes.toString('base64').slice(0, 400)}`;
    server.enqueue(
      anthropicError(529, 'overloaded_error', echo),
      toolUseReply(CAPTION_TOOL_NAME, {}),
      toolUseReply(CAPTION_TOOL_NAME, { caption: 'sks man, standing' }),
    );
    const outcome = await anthropic.caption(image, subject, AbortSignal.timeout(10_000));
    assert.equal(outcome.caption, 'sks man, standing');
    const sent = server.requests[0]!.headers;
    assert.equal(sent.authorization, `Bearer ${key}`, 'the trimmed key from the file');

    server.enqueue(anthropicError(500, 'api_error', echo), anthropicError(500, 'api_error', echo), anthropicError(500, 'api_error', echo));
    const err = await anthropic.caption(image, subject, AbortSignal.timeout(10_000)).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof CaptionError);
    assert.equal(err.code, 'server_error');

    const log = lines.join('');
    assert.ok(lines.filter((l) => l.includes('retrying')).length >= 3, 'the retries were logged');
    assert.match(log, /\[redacted\]/, 'the echoed key was logged redacted');
    assert.ok(!log.includes(key), 'key in the log');
    assert.ok(!err.message.includes(key), 'key in the error');
    assert.ok(!err.message.includes(bytes.toString('base64').slice(0, 120)), 'image bytes in the error');
    const base64 = server.requests[0]!.body.messages[0].content[0].source.data as string;
    assert.ok(!log.includes(base64.slice(0, 200)) && !log.includes(bytes.toString('base64').slice(0, 200)), 'image bytes in the log');
  });
});
