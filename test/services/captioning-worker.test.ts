// The captioning worker through the real app: it keeps to CAPTION_CONCURRENCY, stops a job
// promptly on cancel, resumes a job a dead process left running, gives its job back when
// the app closes, and stops a job whose provider refuses the key; on Postgres and PGlite.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CaptionError } from '../../src/captioning/index.js';
import { DATABASE_MODES } from '../helper.js';
import {
  captionsOf,
  datasetWithPhotos,
  eventually,
  FakeCaptioner,
  getJob,
  registryOf,
  startJob,
  waitForJob,
  withCaptioningApp,
} from '../support/captioning.js';

/** Resolves when the signal aborts; rejects like a provider call that was canceled. */
function untilAborted(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    const fail = () => reject(new CaptionError('canceled', 'caption request canceled', { retryable: false, attempts: 1 }));
    if (signal.aborted) fail();
    else signal.addEventListener('abort', fail, { once: true });
  });
}

for (const mode of DATABASE_MODES) {
  describe(`captioning worker on ${mode.name}`, () => {
    test('never has more than CAPTION_CONCURRENCY requests in flight for a job', async (t) => {
      const limit = 2;
      const total = 6;
      const fake = new FakeCaptioner('openai-compatible');
      // Each call waits until `limit` calls are in flight (or no more can start), so a worker
      // without a limit would reach `total` and one with a lower limit would wait forever.
      let started = 0;
      let release: () => void = () => {};
      let gate = new Promise<void>((resolve) => { release = resolve; });
      fake.behaviour = async (image, subject) => {
        started++;
        if (fake.inFlight >= limit || started === total) {
          release();
          gate = new Promise<void>((resolve) => { release = resolve; });
        } else {
          await gate;
        }
        return `${subject.trigger} ${subject.classWord}, ${image.filename}`;
      };
      const ctx = await withCaptioningApp(t, { embedded: mode.embedded, captioners: registryOf([fake]), env: { CAPTION_CONCURRENCY: String(limit) } });
      const { datasetId } = await datasetWithPhotos(ctx, total);

      const done = await waitForJob(ctx, (await startJob(ctx, datasetId, { provider: 'openai-compatible' })).id);
      assert.equal(done.status, 'succeeded', JSON.stringify(done));
      assert.equal(fake.calls.length, total);
      assert.equal(fake.maxInFlight, limit, `at most ${limit} requests at once, and the limit was used`);
    });

    test('cancel stops a running job at once; captions written so far stay', async (t) => {
      const fake = new FakeCaptioner('openai-compatible');
      const aborted: string[] = [];
      fake.behaviour = async (image, subject, signal) => {
        if (image.filename !== 'photo1.jpg') {
          signal.addEventListener('abort', () => aborted.push(image.filename), { once: true });
          return untilAborted(signal);
        }
        return `${subject.trigger} ${subject.classWord}, first`;
      };
      const ctx = await withCaptioningApp(t, { embedded: mode.embedded, captioners: registryOf([fake]), env: { CAPTION_CONCURRENCY: '1' } });
      const { datasetId, imageIds } = await datasetWithPhotos(ctx, 4);
      const job = await startJob(ctx, datasetId, { provider: 'openai-compatible' });
      await eventually(() => fake.calls.length === 2, 'the second image to be requested');

      const cancel = await ctx.app.inject({ method: 'POST', url: `/v1/captioning-jobs/${job.id}/cancel`, headers: ctx.auth });
      assert.equal(cancel.statusCode, 202, cancel.body);
      assert.equal(cancel.json().cancel_requested, true);
      const done = await waitForJob(ctx, job.id);
      assert.equal(done.status, 'canceled');
      assert.deepEqual(aborted, ['photo2.jpg'], 'the request in flight was aborted');
      assert.equal(fake.calls.length, 2, 'no image was started after the cancel');
      assert.deepEqual(done.progress, { total: 4, done: 4, succeeded: 1, failed: 0, skipped: 0, canceled: 3, cached: 0 });
      const captions = await captionsOf(ctx, datasetId);
      assert.equal(captions.get(imageIds[0]!).caption, 'ohwx dog, first');
      assert.equal(captions.get(imageIds[1]!), null);

      const again = await ctx.app.inject({ method: 'POST', url: `/v1/captioning-jobs/${job.id}/cancel`, headers: ctx.auth });
      assert.equal(again.statusCode, 409, again.body);
      assert.equal(again.json().type, 'tag:sdxl-lora-service,2026:problem:captioning-job-finished');
    });

    test('a job left running by a dead process is resumed by the next one', async (t) => {
      // The first process only queues (no worker), then "dies" holding the job.
      const first = await withCaptioningApp(t, { embedded: mode.embedded, env: { CAPTION_WORKER_JOBS: '0' } });
      const { datasetId, imageIds } = await datasetWithPhotos(first, 3);
      const job = await startJob(first, datasetId, { provider: 'template' });
      assert.equal(job.status, 'queued');
      // As a crash would leave it: running, one image done, one in flight, the lease run out.
      await first.db.query(
        `UPDATE captioning_jobs SET status = 'running', lease_owner = 'dead-host:1:00000000', claims = 1, started_at = now(),
                lease_expires_at = now() - interval '1 second', heartbeat_at = now() - interval '31 seconds' WHERE id = $1`,
        [job.id],
      );
      await first.db.query("UPDATE captioning_job_items SET status = 'succeeded', runs = 1 WHERE job_id = $1 AND image_id = $2", [job.id, imageIds[0]]);
      await first.db.query("UPDATE captioning_job_items SET status = 'running', runs = 1 WHERE job_id = $1 AND image_id = $2", [job.id, imageIds[1]]);
      await first.close();

      const second = await withCaptioningApp(t, { embedded: mode.embedded, apiKey: first.apiKey });
      const done = await waitForJob(second, job.id);
      assert.equal(done.status, 'succeeded', JSON.stringify(done));
      assert.equal(done.progress.succeeded, 3);
      const { rows } = await second.db.query<{ claims: number; lease_owner: string | null }>('SELECT claims, lease_owner FROM captioning_jobs WHERE id = $1', [job.id]);
      assert.deepEqual(rows[0], { claims: 2, lease_owner: null });
      const items = await second.db.query<{ image_id: string; runs: number }>('SELECT image_id, runs FROM captioning_job_items WHERE job_id = $1 ORDER BY image_id', [job.id]);
      assert.deepEqual(items.rows.map((r) => r.runs), [1, 2, 1], 'only the unfinished images ran again');
      const captions = await captionsOf(second, datasetId);
      assert.equal(captions.get(imageIds[0]!), null, 'the image the dead process had finished is not redone');
      assert.equal(captions.get(imageIds[1]!).caption, 'a photo of ohwx dog');
      assert.equal(captions.get(imageIds[2]!).caption, 'a photo of ohwx dog');
    });

    test('closing the app gives a running job back to the queue; the next start finishes it', async (t) => {
      const blocking = new FakeCaptioner('openai-compatible');
      blocking.behaviour = async (_image, _subject, signal) => untilAborted(signal);
      const first = await withCaptioningApp(t, { embedded: mode.embedded, captioners: registryOf([blocking]), env: { CAPTION_CONCURRENCY: '2' } });
      const { datasetId } = await datasetWithPhotos(first, 3);
      const job = await startJob(first, datasetId, { provider: 'openai-compatible' });
      await eventually(() => blocking.calls.length === 2, 'two requests in flight');
      await first.close();

      // What the closed process left: the job queued with no owner, no image in flight.
      const inspector = await withCaptioningApp(t, { embedded: mode.embedded, env: { CAPTION_WORKER_JOBS: '0' }, apiKey: first.apiKey });
      const left = await getJob(inspector, job.id);
      assert.equal(left.status, 'queued');
      assert.equal(left.progress.done, 0);
      const { rows } = await inspector.db.query<{ lease_owner: string | null; running: number }>(
        "SELECT lease_owner, (SELECT count(*)::int FROM captioning_job_items WHERE job_id = $1 AND status = 'running') AS running FROM captioning_jobs WHERE id = $1",
        [job.id],
      );
      assert.deepEqual(rows[0], { lease_owner: null, running: 0 });
      await inspector.close();

      const answering = new FakeCaptioner('openai-compatible');
      const second = await withCaptioningApp(t, { embedded: mode.embedded, captioners: registryOf([answering]), apiKey: first.apiKey });
      const done = await waitForJob(second, job.id);
      assert.equal(done.status, 'succeeded', JSON.stringify(done));
      assert.equal(answering.calls.length, 3, 'every image, the interrupted ones included, was captioned after the restart');
    });

    test('an image deleted while its job runs is dropped and the job goes on', async (t) => {
      const fake = new FakeCaptioner('openai-compatible');
      const ctx = await withCaptioningApp(t, { embedded: mode.embedded, captioners: registryOf([fake]), env: { CAPTION_CONCURRENCY: '1' } });
      const { datasetId, imageIds } = await datasetWithPhotos(ctx, 3);
      fake.behaviour = async (image, subject) => {
        if (image.filename === 'photo2.jpg') {
          const deleted = await ctx.app.inject({ method: 'DELETE', url: `/v1/images/${image.imageId}`, headers: ctx.auth });
          assert.equal(deleted.statusCode, 204);
        }
        return `${subject.trigger} ${subject.classWord}, ${image.filename}`;
      };
      const done = await waitForJob(ctx, (await startJob(ctx, datasetId, { provider: 'openai-compatible' })).id);
      assert.equal(done.status, 'succeeded', JSON.stringify(done));
      assert.deepEqual(done.progress, { total: 2, done: 2, succeeded: 2, failed: 0, skipped: 0, canceled: 0, cached: 0 });
      const captions = await captionsOf(ctx, datasetId);
      assert.deepEqual([...captions.keys()].sort(), [imageIds[0], imageIds[2]].sort());
      assert.equal(captions.get(imageIds[2]!).caption, 'ohwx dog, photo3.jpg');
    });

    test('an API key the provider refuses stops the job: the rest are failed without requests', async (t) => {
      const fake = new FakeCaptioner('anthropic');
      fake.behaviour = async () => {
        throw new CaptionError('auth', 'anthropic 401 authentication_error: invalid x-api-key', { retryable: false, attempts: 1, status: 401 });
      };
      const ctx = await withCaptioningApp(t, { embedded: mode.embedded, captioners: registryOf([fake]), env: { CAPTION_CONCURRENCY: '1' } });
      const { datasetId } = await datasetWithPhotos(ctx, 3);
      const done = await waitForJob(ctx, (await startJob(ctx, datasetId, { provider: 'anthropic' })).id);
      assert.equal(done.status, 'failed');
      assert.equal(done.error.code, 'auth');
      assert.equal(fake.calls.length, 1);
      assert.equal(done.errors.length, 3);
      assert.ok(done.errors.every((e: { code: string }) => e.code === 'auth'));
      assert.equal(done.errors.filter((e: { message: string }) => e.message.startsWith('not attempted')).length, 2);
      assert.equal((await getJob(ctx, done.id)).progress.failed, 3);
    });
  });
}
