// Captioning jobs in batch mode against a local server speaking the Message Batches API:
// 500 images in batches of 100 with a restart while batches are in flight (every image
// captioned once, no request sent twice), failed requests retried in a new batch, cancel,
// and the mode's default and refusal. Postgres only: the restart shares one database
// between two apps, as two processes would.
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { estimateCostUsd } from '../../../src/captioning/pricing.js';
import { CAPTION_TOOL_NAME, NORMALIZE_TOOL_NAME } from '../../../src/captioning/prompts.js';
import type { TestApp } from '../../helper.js';
import { datasetWithPhotos, getJob, startJob, waitForJob, withCaptioningApp } from '../../support/captioning.js';
import { png } from '../../support/images.js';
import { createDataset, upload } from '../../support/images-api.js';
import { toolUseReply } from '../../support/mock-anthropic.js';
import { errored, startMockAnthropicBatches, succeeded, type MockBatchesApi } from '../../support/mock-anthropic-batches.js';
import { filesBody } from '../../support/multipart.js';
import { buildZip } from '../../support/zip.js';

const KEY = 'sk-ant-test-caption-batches-0123456789';
const goodAnswer = (customId: string) => succeeded(CAPTION_TOOL_NAME, { caption: `ohwx dog, picture ${customId}` });
let api: MockBatchesApi;

before(async () => {
  // POST /v1/messages: interactive captions, and the consistency pass (one rewritten caption per id sent).
  api = await startMockAnthropicBatches(goodAnswer, (request) => {
    if (request.body.tool_choice.name === CAPTION_TOOL_NAME) return toolUseReply(CAPTION_TOOL_NAME, { caption: 'ohwx dog, one at a time' });
    const sent = JSON.parse((request.body.messages[0].content as string).split('\n')[1]!) as Array<{ id: string }>;
    return toolUseReply(NORMALIZE_TOOL_NAME, { captions: sent.map(({ id }) => ({ id, caption: `ohwx dog, consistent ${id}` })) });
  });
});
after(() => api.close());
beforeEach(() => {
  api.reset();
  api.answer = goodAnswer;
});

function env(extra: Record<string, string> = {}): Record<string, string> {
  return {
    ANTHROPIC_API_KEY: KEY,
    ANTHROPIC_BASE_URL: api.server.origin,
    CAPTION_BATCH_POLL_MS: '50',
    CAPTION_BATCH_MAX_REQUESTS: '100',
    CAPTION_MAX_RETRIES: '2',
    IMAGE_MIN_SIDE: '8',
    DATASET_MAX_IMAGES: '1000',
    UPLOAD_MAX_FILES: '500',
    ...extra,
  };
}

/** A dataset of `count` distinct 8x8 PNGs, uploaded in one zip; their ids. */
async function datasetOfTinyImages(ctx: TestApp, count: number): Promise<{ datasetId: string; imageIds: string[] }> {
  const datasetId = await createDataset(ctx);
  const entries = await Promise.all(Array.from({ length: count }, async (_, i) => ({ name: `tiny${i}.png`, data: await png({ width: 8, height: 8, seed: 9000 + i }), method: 'store' as const })));
  const response = await upload(ctx, datasetId, filesBody([{ name: 'tiny.zip', data: buildZip(entries), contentType: 'application/zip' }]));
  assert.equal(response.statusCode, 201, response.body);
  return { datasetId, imageIds: (response.json().data as Array<{ id: string }>).map((d) => d.id) };
}

/** A batch job on 3 photos whose one batch the provider holds in progress, as it shows then. */
async function jobWithBatchInFlight(ctx: TestApp) {
  const { datasetId } = await datasetWithPhotos(ctx, 3);
  api.processingMs = Infinity;
  const job = await startJob(ctx, datasetId, { mode: 'batch' });
  return waitForJob(ctx, job.id, (j) => j.batches.length === 1);
}

/** How many captions the job wrote for each image. */
async function captionsWritten(ctx: TestApp, jobId: string): Promise<Map<string, number>> {
  const { rows } = await ctx.db.query<{ image_id: string; n: number }>('SELECT image_id, count(*)::int AS n FROM image_captions WHERE job_id = $1 GROUP BY image_id', [jobId]);
  return new Map(rows.map((r) => [r.image_id, r.n]));
}

describe('captioning jobs in batch mode', () => {
  test('500 images in batches of 100, with a restart while batches are in flight: every image captioned once, sent once', async (t) => {
    const first = await withCaptioningApp(t, { env: env() });
    const { datasetId, imageIds } = await datasetOfTinyImages(first, 500);
    api.processingMs = Infinity;

    const job = await startJob(first, datasetId, {});
    assert.equal(job.mode, 'batch', 'more images than CAPTION_BATCH_THRESHOLD: batch by default');
    const submitted = await waitForJob(first, job.id, (j) => j.batches.length === 5);
    assert.deepEqual(submitted.batches.map((b: { requests: number; status: string }) => [b.requests, b.status]), Array(5).fill([100, 'in_progress']));
    assert.equal(submitted.progress.done, 0);

    // Two batches end and are written; the process stops with three in flight.
    api.release(2);
    await waitForJob(first, job.id, (j) => j.progress.succeeded === 200);
    await first.close();
    assert.equal(api.inProgress, 3);

    const second = await withCaptioningApp(t, { env: env(), apiKey: first.apiKey });
    const resumed = await waitForJob(second, job.id, (j) => j.status === 'running');
    assert.equal(resumed.batches.length, 5, 'the batches in flight are polled, not sent again');
    api.release();
    const done = await waitForJob(second, job.id);
    assert.equal(done.status, 'succeeded', JSON.stringify(done.error));
    assert.deepEqual(done.progress, { total: 500, done: 500, succeeded: 500, failed: 0, skipped: 0, canceled: 0, cached: 0 });
    assert.deepEqual(done.batches.map((b: { status: string }) => b.status), Array(5).fill('collected'));
    assert.deepEqual(done.batches.at(-1).request_counts, { processing: 0, succeeded: 100, errored: 0, canceled: 0, expired: 0 });

    assert.equal(api.created.length, 5, 'no batch was submitted after the restart');
    assert.equal(api.submissions.size, 500);
    assert.deepEqual([...new Set(api.submissions.values())], [1], 'each custom_id was submitted once');
    assert.deepEqual([...api.submissions.keys()].sort(), [...imageIds].sort());
    const written = await captionsWritten(second, job.id);
    assert.equal(written.size, 500);
    assert.deepEqual([...new Set(written.values())], [1], 'each image has exactly one caption from the job');

    // Billed at half the price of the same requests sent one by one.
    const usage = { inputTokens: 500 * 1800, outputTokens: 500 * 60 };
    assert.deepEqual([done.usage.input_tokens, done.usage.output_tokens], [usage.inputTokens, usage.outputTokens]);
    assert.ok(Math.abs(done.usage.cost_usd - estimateCostUsd(done.model, usage)! / 2) < 1e-6, `${done.usage.cost_usd}`);

    // Each batch request is the interactive request for one image.
    const create = api.server.requests.find((r) => r.method === 'POST' && r.path === '/v1/messages/batches')!;
    const params = create.body.requests[0].params;
    assert.equal(params.tool_choice.name, CAPTION_TOOL_NAME);
    assert.equal(params.messages[0].content[0].type, 'image');
    assert.equal(params.messages[0].content[0].source.media_type, 'image/jpeg');
  });

  test('errored, expired and invalid answers go into a new batch while the retry budget lasts; a refused request fails its image', async (t) => {
    const ctx = await withCaptioningApp(t, { env: env() });
    const { datasetId, imageIds } = await datasetWithPhotos(ctx, 6);
    const [overloaded, expired, invalid, refused, alwaysDown] = imageIds as [string, string, string, string, string];
    api.answer = (id, _params, submission) => {
      if (id === overloaded && submission === 1) return errored('overloaded_error', 'Overloaded');
      if (id === expired && submission === 1) return { type: 'expired' };
      if (id === invalid && submission === 1) return succeeded(CAPTION_TOOL_NAME, { caption: 'a dog without the trigger' });
      if (id === refused) return errored('invalid_request_error', 'image could not be processed');
      if (id === alwaysDown) return errored('api_error', 'Internal server error');
      return goodAnswer(id);
    };
    const done = await waitForJob(ctx, (await startJob(ctx, datasetId, { mode: 'batch' })).id);
    assert.equal(done.mode, 'batch');
    assert.equal(done.status, 'failed');
    assert.deepEqual(done.progress, { total: 6, done: 6, succeeded: 4, failed: 2, skipped: 0, canceled: 0, cached: 0 });
    const errors = new Map(done.errors.map((e: { image_id: string }) => [e.image_id, e]));
    assert.deepEqual(errors.get(refused), { image_id: refused, code: 'bad_request', message: 'anthropic batch invalid_request_error: image could not be processed', attempts: 1, http_status: 400 });
    assert.deepEqual(errors.get(alwaysDown), { image_id: alwaysDown, code: 'server_error', message: 'anthropic batch api_error: Internal server error', attempts: 3, http_status: 500 });
    assert.deepEqual(Object.fromEntries(api.submissions), {
      [imageIds[0]!]: 2, [imageIds[1]!]: 2, [imageIds[2]!]: 2, [imageIds[3]!]: 1, [imageIds[4]!]: 3, [imageIds[5]!]: 1,
    });
    assert.deepEqual(done.batches.map((b: { requests: number }) => b.requests), [6, 4, 1]);
    const written = await captionsWritten(ctx, done.id);
    assert.deepEqual([...written.keys()].sort(), [overloaded, expired, invalid, imageIds[5]!].sort());
  });

  test('a refused API key stops the job at its first batch', async (t) => {
    const revoked = 'sk-ant-test-revoked-key-0123456789';
    api.refusedKeys.add(revoked);
    const ctx = await withCaptioningApp(t, { env: env({ ANTHROPIC_API_KEY: revoked }) });
    const { datasetId } = await datasetWithPhotos(ctx, 2);
    const done = await waitForJob(ctx, (await startJob(ctx, datasetId, { mode: 'batch' })).id);
    assert.equal(done.status, 'failed', JSON.stringify(done));
    assert.equal(done.error.code, 'auth');
    assert.deepEqual(done.errors.map((e: { code: string; attempts: number }) => [e.code, e.attempts]), [['auth', 0], ['auth', 0]]);
    assert.deepEqual(done.batches, []);
    assert.equal(api.submissions.size, 0);
  });

  test('the consistency pass runs after the batches, and a re-run answers from the cache without a batch', async (t) => {
    const ctx = await withCaptioningApp(t, { env: env() });
    const { datasetId, imageIds } = await datasetWithPhotos(ctx, 3);
    const done = await waitForJob(ctx, (await startJob(ctx, datasetId, { mode: 'batch', consistency_pass: true })).id);
    assert.equal(done.status, 'succeeded', JSON.stringify(done));
    const normalized = await ctx.db.query<{ caption: string }>('SELECT caption FROM image_captions WHERE job_id = $1 AND is_current AND normalized ORDER BY caption', [done.id]);
    assert.equal(normalized.rows.length, 3);
    assert.equal(api.server.requests.filter((r) => r.path === '/v1/messages').length, 1, 'one consistency request');

    const again = await waitForJob(ctx, (await startJob(ctx, datasetId, { mode: 'batch', image_ids: imageIds })).id);
    assert.equal(again.status, 'succeeded');
    assert.equal(again.progress.cached, 3);
    assert.deepEqual(again.batches, []);
    assert.equal(api.created.length, 1);
  });

  test('canceling a job cancels its batches in flight', async (t) => {
    const ctx = await withCaptioningApp(t, { env: env() });
    const job = await jobWithBatchInFlight(ctx);
    const cancel = await ctx.app.inject({ method: 'POST', url: `/v1/captioning-jobs/${job.id}/cancel`, headers: ctx.auth });
    assert.equal(cancel.statusCode, 202, cancel.body);
    const done = await waitForJob(ctx, job.id);
    assert.equal(done.status, 'canceled');
    assert.deepEqual(api.canceled, [job.batches[0].provider_batch_id]);
    assert.equal(done.batches[0].status, 'abandoned');
    assert.equal(done.progress.canceled, 3);
  });

  test('a job given back with a batch in flight and canceled while no worker runs: the next worker cancels the batch', async (t) => {
    const first = await withCaptioningApp(t, { env: env() });
    const job = await jobWithBatchInFlight(first);
    await first.close();

    const apiOnly = await withCaptioningApp(t, { env: env({ CAPTION_WORKER_JOBS: '0' }), apiKey: first.apiKey });
    const cancel = await apiOnly.app.inject({ method: 'POST', url: `/v1/captioning-jobs/${job.id}/cancel`, headers: apiOnly.auth });
    assert.equal(cancel.statusCode, 202, cancel.body);
    assert.equal(cancel.json().status, 'queued', 'not canceled before its batch is');
    assert.equal(cancel.json().cancel_requested, true);
    await apiOnly.close();

    const next = await withCaptioningApp(t, { env: env(), apiKey: first.apiKey });
    const done = await waitForJob(next, job.id);
    assert.equal(done.status, 'canceled');
    assert.deepEqual(api.canceled, [job.batches[0].provider_batch_id]);
    assert.equal(done.progress.canceled, 3);
  });

  test('mode: batch by default above CAPTION_BATCH_THRESHOLD with anthropic; interactive otherwise or when asked; 422 for a provider without batches', async (t) => {
    const ctx = await withCaptioningApp(t, { env: env({ CAPTION_BATCH_THRESHOLD: '2' }) });
    const three = await datasetWithPhotos(ctx, 3);
    const two = await datasetWithPhotos(ctx, 2);

    const refused = await ctx.app.inject({ method: 'POST', url: `/v1/datasets/${three.datasetId}/captioning-jobs`, headers: ctx.auth, payload: { provider: 'template', mode: 'batch' } });
    assert.equal(refused.statusCode, 422, refused.body);
    assert.equal(refused.json().type.endsWith('batch-mode-unsupported'), true, refused.json().type);
    assert.deepEqual(refused.json().errors.map((e: { field: string }) => e.field), ['mode']);

    const template = await startJob(ctx, three.datasetId, { provider: 'template' });
    assert.equal(template.mode, 'interactive', 'the template provider has no batch API');
    await waitForJob(ctx, template.id);
    const asked = await startJob(ctx, three.datasetId, { mode: 'interactive', overwrite: true });
    assert.equal(asked.mode, 'interactive');
    await waitForJob(ctx, asked.id);
    assert.equal(api.created.length, 0);
    const below = await startJob(ctx, two.datasetId, {});
    assert.equal(below.mode, 'interactive', 'not more than the threshold');
    await waitForJob(ctx, below.id);
    const above = await getJob(ctx, (await startJob(ctx, three.datasetId, { overwrite: true, style_hint: 'new words' })).id);
    assert.equal(above.mode, 'batch');
    assert.equal((await waitForJob(ctx, above.id)).status, 'succeeded');
  });
});
