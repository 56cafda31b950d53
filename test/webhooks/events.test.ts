// Every webhook event type, produced by the real workers, reaches a tenant endpoint and a
// per-request webhook: signatures verified by `standardwebhooks`, bodies {type, timestamp,
// data} with data equal to the resource as its GET returns it, every message and attempt
// listed under /v1/webhook-messages.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { CaptionError } from '../../src/captioning/index.js';
import { BLOBS_SUBDIR } from '../../src/routes/v1/images/index.js';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';
import { DATABASE_MODES, type TestApp } from '../helper.js';
import { datasetWithPhotos, FakeCaptioner, registryOf, startJob, waitForJob, withCaptioningApp } from '../support/captioning.js';
import { startReceiver, verified, type Receiver } from '../support/webhook-receiver.js';

const ENV = { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' };
const QUICK = { resolution: 64, max_steps: 4, checkpoint_every: 0, save_peft: false, rank: 4, alpha: 4 };
const TRAINING_EVENTS = ['training_run.started', 'training_run.validation', 'training_run.succeeded', 'training_run.failed', 'training_run.canceled'];
const ALL_EVENTS = [...TRAINING_EVENTS, 'captioning_job.succeeded', 'captioning_job.failed', 'captioning_job.canceled'];

type Body = { type: string; timestamp: string; data: Record<string, any> };

async function api(ctx: TestApp, method: 'GET' | 'POST', url: string, payload?: object) {
  return ctx.app.inject({ method, url, headers: ctx.auth, ...(payload === undefined ? {} : { payload }) });
}

async function createEndpoint(ctx: TestApp, url: string, events?: string[]): Promise<{ id: string; secret: string }> {
  const response = await api(ctx, 'POST', '/v1/webhook-endpoints', { url, ...(events === undefined ? {} : { events }) });
  assert.equal(response.statusCode, 201, response.body);
  return response.json();
}

async function untilRun(ctx: TestApp, id: string, done: (run: any) => boolean): Promise<any> {
  for (let i = 0; i < 1200; i++) {
    const run = (await api(ctx, 'GET', `/v1/training-runs/${id}`)).json();
    if (done(run)) return run;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`run ${id} did not get there`);
}

/** Waits until every message of the tenant has settled; returns them (newest first). */
async function settledMessages(ctx: TestApp, expected: number): Promise<any[]> {
  for (let i = 0; i < 600; i++) {
    const page = (await api(ctx, 'GET', '/v1/webhook-messages?limit=100')).json();
    if (page.data.length >= expected && page.data.every((m: { status: string }) => m.status === 'succeeded' || m.status === 'failed')) return page.data;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('webhook messages did not settle');
}

/** The verified bodies a receiver got, by webhook-id; fails on a bad signature or a repeated id. */
function bodiesOf(receiver: Receiver, secret: string): Map<string, Body> {
  const out = new Map<string, Body>();
  for (const webhook of receiver.received) {
    assert.equal(out.has(webhook.id), false, `webhook-id ${webhook.id} was delivered once`);
    out.set(webhook.id, verified(secret, webhook) as Body);
  }
  return out;
}

for (const mode of DATABASE_MODES) {
  describe(`webhooks on ${mode.name}`, () => {
    test('a captioning job\'s end goes to the endpoint and to the job\'s own webhook, each signed with its secret, data equal to GET', async (t) => {
      const ctx = await withCaptioningApp(t, { embedded: mode.embedded, env: ENV });
      const endpointReceiver = await startReceiver(t);
      const requestReceiver = await startReceiver(t);
      const endpoint = await createEndpoint(ctx, endpointReceiver.url);
      const { datasetId } = await datasetWithPhotos(ctx, 2);

      const job = await startJob(ctx, datasetId, { provider: 'template', webhook: { url: requestReceiver.url } });
      assert.deepEqual(job.webhook, { url: requestReceiver.url, events: ['captioning_job.succeeded', 'captioning_job.failed', 'captioning_job.canceled'] });
      const done = await waitForJob(ctx, job.id);
      assert.equal(done.status, 'succeeded');

      const [toEndpoint] = await endpointReceiver.waitFor(1);
      const [toRequest] = await requestReceiver.waitFor(1);
      const tenantSecret = (await api(ctx, 'GET', '/v1/webhook-secret')).json().secret;
      for (const [webhook, secret] of [[toEndpoint!, endpoint.secret], [toRequest!, tenantSecret]] as const) {
        const body = verified(secret, webhook);
        assert.equal(body.type, 'captioning_job.succeeded');
        assert.deepEqual(body.data, done, 'data is the job as GET returns it');
        assert.ok(Math.abs(Date.parse(body.timestamp) - Date.parse(done.finished_at)) < 5000);
      }
      assert.throws(() => verified(tenantSecret, toEndpoint!), 'an endpoint\'s messages are not signed with the tenant secret');
      assert.notEqual(toEndpoint!.id, toRequest!.id, 'two receivers, two messages');

      const messages = await settledMessages(ctx, 2);
      const byJob = (await api(ctx, 'GET', `/v1/webhook-messages?resource_id=${job.id}`)).json().data;
      assert.equal(byJob.length, 2);
      const detail = (await api(ctx, 'GET', `/v1/webhook-messages/${toRequest!.id}`)).json();
      assert.equal(detail.status, 'succeeded');
      assert.equal(detail.endpoint_id, null);
      assert.equal(detail.url, requestReceiver.url);
      assert.deepEqual(detail.payload, JSON.parse(toRequest!.body), 'the stored payload is what was sent');
      assert.equal(detail.attempts.length, 1);
      assert.equal(detail.attempts[0].status_code, 200);
      assert.equal(detail.attempts[0].response_body, 'ok');
      assert.equal(messages.every((m: { status: string }) => m.status === 'succeeded'), true);
    });
  });
}

test('every event type is sent: training runs that start, validate, succeed, fail and are canceled; captioning jobs that succeed, fail and are canceled', async (t) => {
  const failing = new FakeCaptioner('openai-compatible');
  failing.behaviour = async () => {
    throw new CaptionError('bad_request', 'openai-compatible 400: the image is unreadable', { retryable: false, attempts: 1, status: 400 });
  };
  const ctx = await withCaptioningApp(t, { env: ENV, captioners: registryOf([failing]) });
  const receiver = await startReceiver(t);
  const perRun = await startReceiver(t);
  const endpoint = await createEndpoint(ctx, receiver.url, ALL_EVENTS);

  // training_run.started, .validation and .succeeded, also to the run's own webhook.
  const { datasetId } = await datasetWithPhotos(ctx, 2);
  const created = await api(ctx, 'POST', '/v1/training-runs', {
    dataset_id: datasetId,
    model: 'sdxl-tiny-demo',
    params: { ...QUICK, validation: { every: 2, prompts: ['a photo of ohwx dog'], steps: 2 } },
    webhook: { url: perRun.url, events: TRAINING_EVENTS },
  });
  assert.equal(created.statusCode, 202, created.body);
  const succeeded = await untilRun(ctx, created.json().id, (r) => r.status === 'succeeded' || r.status === 'failed');
  assert.equal(succeeded.status, 'succeeded');

  // training_run.canceled: a long run canceled while it trains.
  const long = (await api(ctx, 'POST', '/v1/training-runs', { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { ...QUICK, max_steps: 10_000 } })).json();
  // training_run.failed: queued behind it, on a dataset whose image bytes are then lost.
  const { datasetId: lostId } = await datasetWithPhotos(ctx, 1);
  const doomed = (await api(ctx, 'POST', '/v1/training-runs', { dataset_id: lostId, model: 'sdxl-tiny-demo', params: QUICK })).json();
  await untilRun(ctx, long.id, (r) => r.status === 'running');
  const blobs = new FsBlobStore(path.join(ctx.config.dataDir, BLOBS_SUBDIR));
  const { rows: lost } = await ctx.db.query<{ sha256: string }>('SELECT sha256 FROM training_run_images WHERE run_id = $1', [doomed.id]);
  for (const { sha256 } of lost) fs.rmSync(blobs.pathOf(sha256));
  assert.equal((await api(ctx, 'POST', `/v1/training-runs/${long.id}/cancel`)).statusCode, 202);
  const canceled = await untilRun(ctx, long.id, (r) => r.status === 'canceled');
  const failed = await untilRun(ctx, doomed.id, (r) => r.status === 'failed');
  assert.equal(failed.error.code, 'training_failed');

  // captioning_job.succeeded (template), .failed (a provider that refuses every image), .canceled (canceled while queued).
  const captioned = await waitForJob(ctx, (await startJob(ctx, datasetId, { provider: 'template', overwrite: true })).id);
  const refused = await waitForJob(ctx, (await startJob(ctx, datasetId, { provider: 'openai-compatible', overwrite: true })).id);
  assert.equal(refused.status, 'failed');
  const { datasetId: otherId } = await datasetWithPhotos(ctx, 1);
  const queuedJob = await startJob(ctx, otherId, { provider: 'template' });
  const cancelJob = await api(ctx, 'POST', `/v1/captioning-jobs/${queuedJob.id}/cancel`);
  const jobCanceled = cancelJob.json().status === 'canceled' ? cancelJob.json() : await waitForJob(ctx, queuedJob.id);

  const messages = await settledMessages(ctx, 9);
  const bodies = bodiesOf(receiver, endpoint.secret);
  const byType = new Map<string, Body[]>();
  for (const body of bodies.values()) byType.set(body.type, [...(byType.get(body.type) ?? []), body]);
  const get = async (url: string) => (await api(ctx, 'GET', url)).json();

  assert.deepEqual(byType.get('training_run.succeeded')!.map((b) => b.data), [await get(`/v1/training-runs/${succeeded.id}`)]);
  assert.deepEqual(byType.get('training_run.canceled')!.map((b) => b.data), [await get(`/v1/training-runs/${canceled.id}`)]);
  assert.deepEqual(byType.get('training_run.failed')!.map((b) => b.data), [await get(`/v1/training-runs/${failed.id}`)]);
  const started = byType.get('training_run.started')!;
  assert.deepEqual(started.map((b) => b.data.id).sort(), [succeeded.id, long.id, doomed.id].sort(), 'one started event per run that was claimed');
  assert.ok(started.every((b) => b.data.status === 'starting' && b.data.attempt === 1), 'started shows the run as it was then');
  const validations = byType.get('training_run.validation')!.filter((b) => b.data.run_id === succeeded.id);
  const events = (await get(`/v1/training-runs/${succeeded.id}/events?type=validation`)).data;
  assert.ok(events.length >= 2, 'validations at steps 2 and 4 at least');
  assert.deepEqual(validations.map((b) => b.data), events.map((e: object) => ({ run_id: succeeded.id, ...e })));
  assert.deepEqual(byType.get('captioning_job.succeeded')!.map((b) => b.data), [await get(`/v1/captioning-jobs/${captioned.id}`)]);
  assert.deepEqual(byType.get('captioning_job.failed')!.map((b) => b.data), [await get(`/v1/captioning-jobs/${refused.id}`)]);
  assert.deepEqual(byType.get('captioning_job.canceled')!.map((b) => b.data), [jobCanceled]);
  assert.equal(bodies.size, messages.filter((m) => m.endpoint_id === endpoint.id).length);

  // The run's own webhook got that run's events only, signed with the tenant's secret.
  const tenantSecret = (await get('/v1/webhook-secret')).secret;
  const own = [...bodiesOf(perRun, tenantSecret).values()];
  assert.deepEqual(own.map((b) => b.type).sort(), ['training_run.started', 'training_run.succeeded', ...events.map(() => 'training_run.validation')]);
  assert.ok(own.every((b) => (b.type === 'training_run.validation' ? b.data.run_id : b.data.id) === succeeded.id));
});
