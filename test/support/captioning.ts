// Test support for captions and captioning jobs: an app built with chosen captioners (a
// fake one whose behaviour each test scripts), photo uploads, and waiting for a job.
import assert from 'node:assert/strict';
import { after, type TestContext } from 'node:test';
import path from 'node:path';
import type { FastifyServerOptions } from 'fastify';
import { buildApp } from '../../src/app.js';
import {
  CAPTION_PROVIDERS,
  type CaptionImageInput,
  type CaptionOutcome,
  type Captioner,
  type CaptionerRegistry,
  type CaptionProvider,
  type CaptionSubject,
  type NormalizedCaptions,
} from '../../src/captioning/index.js';
import { TemplateCaptioner } from '../../src/captioning/template.js';
import type { Database } from '../../src/db/database.js';
import { createPgliteDatabase } from '../../src/db/pglite.js';
import { findKeyOwner, issueApiKey } from '../../src/services/api-keys.js';
import { fileTempDir, testConfig, testTenantName, type TestApp } from '../helper.js';
import { jpeg } from './images.js';
import { createDataset, upload } from './images-api.js';
import { filesBody, type Part, multipart } from './multipart.js';
import type { WebhooksPluginOptions } from '../../src/plugins/webhooks.js';

// ---------------------------------------------------------------- captioners

export type CaptionBehaviour = (image: CaptionImageInput, subject: CaptionSubject, signal: AbortSignal) => Promise<string>;

/** A captioner whose answers a test scripts; counts its calls and the calls in flight. */
export class FakeCaptioner implements Captioner {
  readonly provider: CaptionProvider;
  readonly model = 'fake-vlm-1';
  readonly promptVersion = 'fake-v1';
  readonly calls: string[] = [];
  normalizeCalls = 0;
  inFlight = 0;
  maxInFlight = 0;
  behaviour: CaptionBehaviour;
  normalizeBehaviour: (captions: { imageId: string; caption: string }[], subject: CaptionSubject) => Promise<string[]>;

  constructor(provider: CaptionProvider = 'openai-compatible', behaviour?: CaptionBehaviour) {
    this.provider = provider;
    this.behaviour = behaviour ?? (async (image, subject) => `${subject.trigger} ${subject.classWord}, photo ${image.filename}`);
    this.normalizeBehaviour = async (captions) => captions.map((c) => c.caption.toLowerCase());
  }

  async caption(image: CaptionImageInput, subject: CaptionSubject, signal: AbortSignal): Promise<CaptionOutcome> {
    this.calls.push(image.imageId);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      const caption = await this.behaviour(image, subject, signal);
      return { caption, model: this.model, promptVersion: this.promptVersion, usage: { inputTokens: 100, outputTokens: 10 }, costUsd: 0.001 };
    } finally {
      this.inFlight--;
    }
  }

  async normalize(captions: { imageId: string; caption: string }[], subject: CaptionSubject): Promise<NormalizedCaptions> {
    this.normalizeCalls++;
    const rewritten = await this.normalizeBehaviour(captions, subject);
    return { captions: captions.map((c, i) => ({ imageId: c.imageId, caption: rewritten[i]! })), usage: { inputTokens: 500, outputTokens: 50 }, costUsd: 0.002 };
  }
}

/** The template captioner plus the given ones; `defaultProvider` defaults to template. */
export function registryOf(captioners: Captioner[], defaultProvider: CaptionProvider = 'template'): CaptionerRegistry {
  const byProvider = new Map<CaptionProvider, Captioner>([['template', new TemplateCaptioner()]]);
  for (const c of captioners) byProvider.set(c.provider, c);
  return {
    defaultProvider,
    get: (provider) => byProvider.get(provider),
    configured: () => CAPTION_PROVIDERS.filter((p) => byProvider.has(p)),
  };
}

// ---------------------------------------------------------------- apps

let embedded: Promise<Database> | undefined;
after(async () => {
  if (embedded) await (await embedded).close();
});

/** This file's embedded database for captioning apps (apps built one after another share it, as a restarted process would). */
function embeddedDatabase(): Promise<Database> {
  embedded ??= createPgliteDatabase(path.join(fileTempDir(), 'pglite-captioning'));
  return embedded;
}

export interface CaptioningAppOptions {
  embedded?: boolean;
  env?: Record<string, string>;
  captioners?: CaptionerRegistry;
  logger?: FastifyServerOptions['logger'];
  /** Reuse this tenant's key instead of creating a new tenant (an app "restarted" on the same data). */
  apiKey?: string;
  /** The webhook dispatcher's clock, jitter and name resolution. */
  webhooks?: WebhooksPluginOptions;
}

/** Like withTestApp, with captioners of the test's choosing; closed after `t`. */
export async function withCaptioningApp(t: TestContext, options: CaptioningAppOptions = {}): Promise<TestApp & { close(): Promise<void> }> {
  const config = await testConfig({ embedded: options.embedded ?? false, env: options.env ?? {} });
  const app = await buildApp(config, {
    logger: options.logger ?? false,
    ...(options.embedded ? { database: await embeddedDatabase() } : {}),
    ...(options.captioners ? { captioners: options.captioners } : {}),
    ...(options.webhooks ? { webhooks: options.webhooks } : {}),
  });
  let closed = false;
  const close = async () => {
    if (!closed) await app.close();
    closed = true;
  };
  t.after(close);
  await app.ready();
  let apiKey = options.apiKey;
  let tenantId: string;
  if (apiKey === undefined) {
    const issued = await issueApiKey(app.db, testTenantName());
    apiKey = issued.key;
    tenantId = issued.tenant.id;
  } else {
    tenantId = (await findKeyOwner(app.db, apiKey))!.tenant.id;
  }
  return {
    app,
    apiKey,
    tenantId,
    db: app.db,
    config,
    auth: { authorization: `Bearer ${apiKey}` },
    createTenantKey: async (name = testTenantName()) => (await issueApiKey(app.db, name)).key,
    close,
  };
}

// ---------------------------------------------------------------- API calls

let seed = 70_000;

/** Distinct 256x256 JPEGs named photo1.jpg, photo2.jpg, ...; `captions[i]` adds a sidecar for photo i+1. */
export async function uploadPhotos(ctx: TestApp, datasetId: string, count: number, captions: Record<number, string> = {}): Promise<string[]> {
  const parts: Part[] = [];
  for (let i = 1; i <= count; i++) {
    parts.push({ field: 'files', filename: `photo${i}.jpg`, contentType: 'image/jpeg', data: await jpeg({ width: 256, height: 256, seed: ++seed }) });
    const caption = captions[i];
    if (caption !== undefined) parts.push({ field: 'files', filename: `photo${i}.txt`, contentType: 'text/plain', data: caption });
  }
  const response = await upload(ctx, datasetId, count === 0 ? filesBody([]) : multipart(parts));
  assert.equal(response.statusCode, 201, response.body);
  return (response.json().data as Array<{ id: string }>).map((d) => d.id);
}

/** A dataset (class word dog, trigger ohwx) with `count` photos; their ids in upload order. */
export async function datasetWithPhotos(ctx: TestApp, count: number, captions: Record<number, string> = {}): Promise<{ datasetId: string; imageIds: string[] }> {
  const datasetId = await createDataset(ctx);
  return { datasetId, imageIds: count === 0 ? [] : await uploadPhotos(ctx, datasetId, count, captions) };
}

export async function startJob(ctx: TestApp, datasetId: string, body: Record<string, unknown> = {}) {
  const response = await ctx.app.inject({ method: 'POST', url: `/v1/datasets/${datasetId}/captioning-jobs`, headers: ctx.auth, payload: body });
  assert.equal(response.statusCode, 202, response.body);
  return response.json();
}

export async function getJob(ctx: TestApp, jobId: string) {
  const response = await ctx.app.inject({ method: 'GET', url: `/v1/captioning-jobs/${jobId}`, headers: ctx.auth });
  assert.equal(response.statusCode, 200, response.body);
  return response.json();
}

const FINISHED = new Set(['succeeded', 'failed', 'canceled']);
const WAIT_LIMIT_MS = 15_000;

/** Polls the job until `until` holds (default: finished); fails the test after 15 s. */
export async function waitForJob(ctx: TestApp, jobId: string, until: (job: any) => boolean = (job) => FINISHED.has(job.status)) {
  const deadline = Date.now() + WAIT_LIMIT_MS;
  for (;;) {
    const job = await getJob(ctx, jobId);
    if (until(job)) return job;
    if (Date.now() > deadline) assert.fail(`job ${jobId} did not get there: ${JSON.stringify(job)}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Resolves when `check` holds, polling every few ms; fails after 15 s. */
export async function eventually(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_LIMIT_MS;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The dataset's captions by image id (text, or null). */
export async function captionsOf(ctx: TestApp, datasetId: string): Promise<Map<string, any>> {
  const response = await ctx.app.inject({ method: 'GET', url: `/v1/datasets/${datasetId}/captions?limit=100`, headers: ctx.auth });
  assert.equal(response.statusCode, 200, response.body);
  return new Map((response.json().data as Array<{ image_id: string; current: unknown }>).map((d) => [d.image_id, d.current]));
}
