// /v1/datasets/{id}/captioning-jobs and /v1/captioning-jobs/{id}: a job captions a dataset in
// the background with the template provider, with anthropic (a local Messages API server)
// and a scripted captioner; manual captions survive, answers are cached, a failed image is
// retried alone, the consistency pass rewrites the set; on Postgres and PGlite.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, beforeEach, describe, test } from 'node:test';
import { CaptionError } from '../../../src/captioning/index.js';
import { CAPTION_TOOL_NAME } from '../../../src/captioning/prompts.js';
import { DATABASE_MODES } from '../../helper.js';
import {
  captionsOf,
  datasetWithPhotos,
  FakeCaptioner,
  registryOf,
  startJob,
  waitForJob,
  withCaptioningApp,
} from '../../support/captioning.js';
import { startMockAnthropic, toolUseReply, type ScriptedServer } from '../../support/mock-anthropic.js';

const ANTHROPIC_KEY = 'sk-ant-test-captioning-jobs-0123456789';
let anthropic: ScriptedServer;

before(async () => {
  anthropic = await startMockAnthropic(() => toolUseReply(CAPTION_TOOL_NAME, { caption: 'ohwx dog sitting on grass, daylight' }));
});
after(() => anthropic.close());
beforeEach(() => anthropic.reset());

for (const mode of DATABASE_MODES) {
  describe(`captioning jobs on ${mode.name}`, () => {
    test('a template job captions every image, keeps uploaded sidecars and reports progress', async (t) => {
      const ctx = await withCaptioningApp(t, { embedded: mode.embedded });
      const { datasetId, imageIds } = await datasetWithPhotos(ctx, 3, { 1: 'my own words about ohwx dog' });

      const created = await ctx.app.inject({ method: 'POST', url: `/v1/datasets/${datasetId}/captioning-jobs`, headers: ctx.auth, payload: { provider: 'template' } });
      assert.equal(created.statusCode, 202, created.body);
      const job = created.json();
      assert.equal(created.headers.location, `/v1/captioning-jobs/${job.id}`);
      assert.match(job.id, /^cj_[0-9A-HJKMNP-TV-Z]{26}$/);
      assert.ok(['queued', 'running'].includes(job.status), job.status);
      assert.equal(job.provider, 'template');
      assert.equal(job.progress.total, 3);
      assert.deepEqual(job.options, { overwrite: false, style_hint: null, image_ids: null, consistency_pass: false });

      const done = await waitForJob(ctx, job.id);
      assert.equal(done.status, 'succeeded', JSON.stringify(done));
      assert.deepEqual(done.progress, { total: 3, done: 3, succeeded: 2, failed: 0, skipped: 1, canceled: 0, cached: 0 });
      assert.deepEqual(done.errors, []);
      assert.equal(done.error, null);
      assert.ok(done.started_at && done.finished_at);

      const captions = await captionsOf(ctx, datasetId);
      assert.equal(captions.get(imageIds[0]!).caption, 'my own words about ohwx dog');
      assert.equal(captions.get(imageIds[0]!).source, 'upload');
      for (const id of imageIds.slice(1)) {
        const c = captions.get(id);
        assert.equal(c.caption, 'a photo of ohwx dog');
        assert.equal(c.source, 'template');
        assert.equal(c.model, 'template');
        assert.equal(c.prompt_version, 'template-v1');
        assert.equal(c.job_id, job.id);
        assert.equal(c.current, true);
      }
      // The images API shows the same current caption.
      const image = await ctx.app.inject({ method: 'GET', url: `/v1/images/${imageIds[1]}`, headers: ctx.auth });
      assert.equal(image.json().caption, 'a photo of ohwx dog');
      assert.equal(image.json().caption_source, 'template');

      const list = await ctx.app.inject({ method: 'GET', url: `/v1/datasets/${datasetId}/captioning-jobs`, headers: ctx.auth });
      assert.equal(list.statusCode, 200, list.body);
      assert.deepEqual(list.json().data.map((j: { id: string }) => j.id), [job.id]);
    });

    test('anthropic: captions carry model, tokens and cost; re-running answers from the cache; the key never shows', async (t) => {
      const logs: string[] = [];
      const stream = new Writable({ write(chunk, _enc, done) { logs.push(String(chunk)); done(); } });
      const ctx = await withCaptioningApp(t, {
        embedded: mode.embedded,
        env: { ANTHROPIC_API_KEY: ANTHROPIC_KEY, ANTHROPIC_BASE_URL: anthropic.origin, CAPTION_MAX_RETRIES: '0' },
        logger: { level: 'trace', stream },
      });
      const { datasetId, imageIds } = await datasetWithPhotos(ctx, 2);
      const responses: string[] = [];

      const first = await startJob(ctx, datasetId, {});
      assert.equal(first.provider, 'anthropic', 'anthropic is the default provider once its key is set');
      const done = await waitForJob(ctx, first.id);
      responses.push(JSON.stringify(done));
      assert.equal(done.status, 'succeeded', JSON.stringify(done));
      assert.equal(anthropic.requests.length, 2);
      assert.equal(done.usage.input_tokens, 3600);
      assert.equal(done.usage.output_tokens, 120);
      assert.ok(done.usage.cost_usd > 0, 'a priced model has an estimated cost');
      const captions = await captionsOf(ctx, datasetId);
      for (const id of imageIds) {
        const c = captions.get(id);
        assert.equal(c.caption, 'ohwx dog sitting on grass, daylight');
        assert.equal(c.source, 'anthropic');
        assert.equal(c.model, done.model);
        assert.equal(c.prompt_version, done.prompt_version);
        assert.deepEqual(c.usage, { input_tokens: 1800, output_tokens: 60 });
        assert.ok(c.cost_usd > 0);
        assert.equal(c.cached, false);
      }

      // Same bytes, provider, model, prompt and tokens: no request at all. One caption was
      // edited by hand meanwhile; overwrite puts the cached answer back as a new version.
      assert.equal((await ctx.app.inject({ method: 'PUT', url: `/v1/images/${imageIds[0]}/caption`, headers: ctx.auth, payload: { caption: 'ohwx dog by hand' } })).statusCode, 200);
      const again = await waitForJob(ctx, (await startJob(ctx, datasetId, { overwrite: true })).id);
      responses.push(JSON.stringify(again));
      assert.equal(again.status, 'succeeded');
      assert.equal(anthropic.requests.length, 2, 'a cached caption causes no request');
      assert.equal(again.progress.cached, 2);
      assert.deepEqual(again.usage, { input_tokens: 0, output_tokens: 0, cost_usd: 0 });
      const history = await ctx.app.inject({ method: 'GET', url: `/v1/images/${imageIds[0]}/caption/history`, headers: ctx.auth });
      responses.push(history.body);
      assert.deepEqual(
        history.json().data.map((c: { source: string; cached: boolean; current: boolean }) => [c.source, c.cached, c.current]),
        [['anthropic', true, true], ['manual', false, false], ['anthropic', false, false]],
      );
      const unchanged = await ctx.app.inject({ method: 'GET', url: `/v1/images/${imageIds[1]}/caption/history`, headers: ctx.auth });
      assert.equal(unchanged.json().data.length, 1, 'the same answer again adds no version');

      // A new style hint is another cache key: one request per image again.
      const hinted = await waitForJob(ctx, (await startJob(ctx, datasetId, { style_hint: 'mention the light' })).id);
      assert.equal(hinted.status, 'succeeded');
      assert.equal(anthropic.requests.length, 4);

      const sentImage = anthropic.requests[0]!.body.messages[0].content.find((b: { type: string }) => b.type === 'image').source.data as string;
      const logText = logs.join('');
      assert.ok(logText.includes('captioning job finished'), 'the worker logged');
      assert.ok(!logText.includes(ANTHROPIC_KEY), 'the API key is never logged');
      assert.ok(!logText.includes(sentImage.slice(0, 64)), 'image bytes are never logged');
      for (const body of responses) assert.ok(!body.includes(ANTHROPIC_KEY), 'the API key is never returned');
    });

    test('manual captions survive a job; overwrite: true replaces them and keeps them in the history', async (t) => {
      const ctx = await withCaptioningApp(t, { embedded: mode.embedded });
      const { datasetId, imageIds } = await datasetWithPhotos(ctx, 2);
      const [manual, other] = imageIds as [string, string];
      const put = await ctx.app.inject({ method: 'PUT', url: `/v1/images/${manual}/caption`, headers: ctx.auth, payload: { caption: 'ohwx dog, written by hand' } });
      assert.equal(put.statusCode, 200, put.body);

      const kept = await waitForJob(ctx, (await startJob(ctx, datasetId, { provider: 'template' })).id);
      assert.equal(kept.status, 'succeeded');
      assert.equal(kept.progress.skipped, 1);
      let captions = await captionsOf(ctx, datasetId);
      assert.equal(captions.get(manual).caption, 'ohwx dog, written by hand');
      assert.equal(captions.get(manual).source, 'manual');
      assert.equal(captions.get(other).source, 'template');

      const replaced = await waitForJob(ctx, (await startJob(ctx, datasetId, { provider: 'template', overwrite: true })).id);
      assert.equal(replaced.status, 'succeeded');
      assert.equal(replaced.progress.skipped, 0);
      captions = await captionsOf(ctx, datasetId);
      assert.equal(captions.get(manual).source, 'template');
      const history = await ctx.app.inject({ method: 'GET', url: `/v1/images/${manual}/caption/history`, headers: ctx.auth });
      assert.deepEqual(history.json().data.map((c: { source: string }) => c.source), ['template', 'manual']);
    });

    test('a failed image leaves the others captioned and is retried alone with image_ids', async (t) => {
      const fake = new FakeCaptioner('openai-compatible');
      let failures = 0;
      fake.behaviour = async (image, subject) => {
        if (image.filename === 'photo2.jpg' && failures === 0) {
          failures++;
          throw new CaptionError('server_error', 'openai-compatible 500: upstream model crashed', { retryable: true, attempts: 3, status: 500 });
        }
        return `${subject.trigger} ${subject.classWord}, ${image.filename}`;
      };
      const ctx = await withCaptioningApp(t, { embedded: mode.embedded, captioners: registryOf([fake]) });
      const { datasetId, imageIds } = await datasetWithPhotos(ctx, 3);

      const failed = await waitForJob(ctx, (await startJob(ctx, datasetId, { provider: 'openai-compatible' })).id);
      assert.equal(failed.status, 'failed');
      assert.deepEqual(failed.progress, { total: 3, done: 3, succeeded: 2, failed: 1, skipped: 0, canceled: 0, cached: 0 });
      assert.deepEqual(failed.errors, [{ image_id: imageIds[1], code: 'server_error', message: 'openai-compatible 500: upstream model crashed', attempts: 3, http_status: 500 }]);
      assert.equal(failed.error.code, 'images_failed');
      assert.equal(failed.usage.cost_usd, 0.002, 'the two answered requests are counted');
      let captions = await captionsOf(ctx, datasetId);
      assert.equal(captions.get(imageIds[0]!).caption, 'ohwx dog, photo1.jpg');
      assert.equal(captions.get(imageIds[1]!), null);
      assert.equal(captions.get(imageIds[2]!).caption, 'ohwx dog, photo3.jpg');

      const retry = await waitForJob(ctx, (await startJob(ctx, datasetId, { provider: 'openai-compatible', image_ids: [imageIds[1]] })).id);
      assert.equal(retry.status, 'succeeded');
      assert.equal(retry.progress.total, 1);
      assert.deepEqual(retry.options.image_ids, [imageIds[1]]);
      assert.equal(fake.calls.length, 4, 'only the failed image was requested again');
      captions = await captionsOf(ctx, datasetId);
      assert.equal(captions.get(imageIds[1]!).caption, 'ohwx dog, photo2.jpg');
    });

    test('the consistency pass rewrites machine captions in one more request and leaves manual ones', async (t) => {
      const fake = new FakeCaptioner('anthropic');
      fake.normalizeBehaviour = async (captions) => captions.map((c) => `${c.caption}, consistent`);
      const ctx = await withCaptioningApp(t, { embedded: mode.embedded, captioners: registryOf([fake]) });
      const { datasetId, imageIds } = await datasetWithPhotos(ctx, 3, { 3: 'ohwx dog by hand' });

      const done = await waitForJob(ctx, (await startJob(ctx, datasetId, { provider: 'anthropic', consistency_pass: true })).id);
      assert.equal(done.status, 'succeeded', JSON.stringify(done));
      assert.equal(fake.normalizeCalls, 1);
      assert.deepEqual(done.usage, { input_tokens: 2 * 100 + 500, output_tokens: 2 * 10 + 50, cost_usd: 0.004 });
      const captions = await captionsOf(ctx, datasetId);
      for (const id of imageIds.slice(0, 2)) {
        assert.match(captions.get(id).caption, /^ohwx dog, photo photo\d\.jpg, consistent$/);
        assert.equal(captions.get(id).normalized, true);
        assert.equal(captions.get(id).usage, null, 'the pass\'s tokens count on the job');
      }
      assert.equal(captions.get(imageIds[2]!).caption, 'ohwx dog by hand');
    });
  });
}
