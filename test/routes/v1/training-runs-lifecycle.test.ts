// What surrounds a run's training: deleting runs and their files, datasets and blobs a run
// still needs, the tenant's queue limit, event-stream heartbeats, and an event loop that
// keeps answering while a run trains. On Postgres and PGlite.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { BLOBS_SUBDIR } from '../../../src/routes/v1/images/index.js';
import { FsBlobStore } from '../../../src/storage/fs-blob-store.js';
import { DATABASE_MODES, withTestApp, type TestApp } from '../../helper.js';
import { createDataset, upload } from '../../support/images-api.js';
import { png } from '../../support/images.js';
import { filesBody } from '../../support/multipart.js';

const QUICK = { resolution: 64, max_steps: 3, checkpoint_every: 0, save_peft: false };

// Tests of a file share its DATA_DIR: each dataset gets bytes of its own, so no blob is shared by accident.
let nextSeed = 100;

async function datasetWithPhotos(ctx: TestApp, key = ctx.apiKey): Promise<{ datasetId: string; imageIds: string[] }> {
  const datasetId = await createDataset(ctx, key);
  const response = await upload(ctx, datasetId, filesBody([
    { name: 'a.png', data: await png({ width: 256, height: 256, seed: nextSeed++ }) },
    { name: 'b.png', data: await png({ width: 256, height: 288, seed: nextSeed++ }) },
  ]), key);
  assert.equal(response.statusCode, 201, response.body);
  return { datasetId, imageIds: response.json().data.map((image: { id: string }) => image.id) };
}

function request(ctx: TestApp, method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object, key = ctx.apiKey) {
  return ctx.app.inject({ method, url, headers: { authorization: `Bearer ${key}` }, ...(payload === undefined ? {} : { payload }) });
}

async function until(ctx: TestApp, id: string, done: (run: any) => boolean): Promise<any> {
  for (let i = 0; i < 1200; i++) {
    const run = (await request(ctx, 'GET', `/v1/training-runs/${id}`)).json();
    if (done(run)) return run;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`training run ${id} did not get there`);
}

const finished = (run: { status: string }) => ['succeeded', 'failed', 'canceled'].includes(run.status);

for (const mode of DATABASE_MODES) {
  describe(`training run lifecycle on ${mode.name}`, () => {
    test('a finished run is deleted with its files and artifacts; a queued one is not (409)', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const { datasetId } = await datasetWithPhotos(ctx);
      const run = (await request(ctx, 'POST', '/v1/training-runs', { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: QUICK })).json();
      assert.equal((await until(ctx, run.id, finished)).status, 'succeeded');
      const folder = path.join(ctx.config.dataDir, 'runs', run.id);
      assert.ok(fs.existsSync(path.join(folder, 'lora.safetensors')));
      assert.equal((await request(ctx, 'DELETE', `/v1/training-runs/${run.id}`)).statusCode, 204);
      assert.equal(fs.existsSync(folder), false, 'files removed');
      for (const url of [`/v1/training-runs/${run.id}`, `/v1/training-runs/${run.id}/artifacts`, `/v1/training-runs/${run.id}/events`,
        `/v1/training-runs/${run.id}/artifacts/lora.safetensors`]) {
        assert.equal((await request(ctx, 'GET', url)).statusCode, 404, url);
      }
      assert.equal((await request(ctx, 'DELETE', `/v1/training-runs/${run.id}`)).statusCode, 404);
    });

    test('a queued run keeps its dataset (409) and its image blobs; both go once it is canceled and deleted', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded, env: { TRAINING_SLOTS: '0' } });
      const { datasetId, imageIds } = await datasetWithPhotos(ctx);
      const run = (await request(ctx, 'POST', '/v1/training-runs', { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: QUICK })).json();
      const refused = await request(ctx, 'DELETE', `/v1/datasets/${datasetId}`);
      assert.equal(refused.statusCode, 409, refused.body);
      assert.match(refused.json().type, /dataset-in-use$/);
      assert.equal((await request(ctx, 'GET', `/v1/datasets/${datasetId}`)).statusCode, 200, 'nothing deleted');
      const deleteQueued = await request(ctx, 'DELETE', `/v1/training-runs/${run.id}`);
      assert.equal(deleteQueued.statusCode, 409);
      assert.match(deleteQueued.json().type, /training-run-not-finished$/);

      // The image leaves the dataset, but the queued run still trains on it: its bytes stay.
      const image = (await request(ctx, 'GET', `/v1/images/${imageIds[0]}`)).json();
      const blobs = new FsBlobStore(path.join(ctx.config.dataDir, BLOBS_SUBDIR));
      assert.equal((await request(ctx, 'DELETE', `/v1/images/${imageIds[0]}`)).statusCode, 204);
      assert.equal(await blobs.exists(image.sha256), true, 'the run still needs the blob');

      assert.equal((await request(ctx, 'POST', `/v1/training-runs/${run.id}/cancel`)).json().status, 'canceled');
      assert.equal((await request(ctx, 'DELETE', `/v1/datasets/${datasetId}`)).statusCode, 204, 'a finished run does not hold its dataset');
      assert.equal(await blobs.exists(image.sha256), true, 'the canceled run still lists it');
      assert.equal((await request(ctx, 'DELETE', `/v1/training-runs/${run.id}`)).statusCode, 204);
      assert.equal(await blobs.exists(image.sha256), false, 'released with the run');
    });

    test("over TENANT_MAX_QUEUED_RUNS a run is refused (429) and nothing is stored; other tenants are not held back", async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded, env: { TRAINING_SLOTS: '0', TENANT_MAX_QUEUED_RUNS: '2' } });
      const { datasetId } = await datasetWithPhotos(ctx);
      const body = { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: QUICK };
      assert.equal((await request(ctx, 'POST', '/v1/training-runs', body)).statusCode, 202);
      assert.equal((await request(ctx, 'POST', '/v1/training-runs', body)).statusCode, 202);
      const refused = await request(ctx, 'POST', '/v1/training-runs', body);
      assert.equal(refused.statusCode, 429, refused.body);
      assert.match(refused.json().type, /training-queue-full$/);
      assert.equal(refused.headers['retry-after'], '60');
      assert.equal((await request(ctx, 'GET', '/v1/training-runs')).json().data.length, 2, 'nothing stored');

      const other = await ctx.createTenantKey();
      const theirs = await datasetWithPhotos(ctx, other);
      const response = await request(ctx, 'POST', '/v1/training-runs', { ...body, dataset_id: theirs.datasetId }, other);
      assert.equal(response.statusCode, 202, 'the limit is per tenant');
      // A finished run frees its place.
      const first = (await request(ctx, 'GET', '/v1/training-runs')).json().data[0];
      await request(ctx, 'POST', `/v1/training-runs/${first.id}/cancel`);
      assert.equal((await request(ctx, 'POST', '/v1/training-runs', body)).statusCode, 202);
    });

    test('an idle event stream carries heartbeat comments; bad Last-Event-ID is a 400 naming it', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded, env: { TRAINING_SLOTS: '0', SSE_HEARTBEAT_MS: '100' } });
      const { datasetId } = await datasetWithPhotos(ctx);
      const run = (await request(ctx, 'POST', '/v1/training-runs', { dataset_id: datasetId, model: 'sdxl-tiny-demo', params: QUICK })).json();
      const base = await ctx.app.listen({ port: 0, host: '127.0.0.1' });
      const controller = new AbortController();
      const response = await fetch(`${base}/v1/training-runs/${run.id}/events`, {
        headers: { ...ctx.auth, accept: 'text/event-stream' },
        signal: controller.signal,
      });
      assert.equal(response.status, 200);
      assert.match(response.headers.get('content-type')!, /^text\/event-stream/);
      let text = '';
      const decoder = new TextDecoder();
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        text += decoder.decode(chunk, { stream: true });
        if ((text.match(/: heartbeat\n\n/g) ?? []).length >= 2) break;
      }
      controller.abort();
      assert.match(text, /^retry: \d+\n\n/);
      assert.match(text, /id: \d+\nevent: status\ndata: \{.*"status":"queued"/);
      const bad = await ctx.app.inject({
        method: 'GET', url: `/v1/training-runs/${run.id}/events`, headers: { ...ctx.auth, accept: 'text/event-stream', 'last-event-id': 'abc' },
      });
      assert.equal(bad.statusCode, 400);
      assert.equal(bad.json().errors[0].field, 'last-event-id');
    });

    test('while a run trains, timers keep firing and requests are answered', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const { datasetId } = await datasetWithPhotos(ctx);
      const run = (await request(ctx, 'POST', '/v1/training-runs', {
        dataset_id: datasetId, model: 'sdxl-tiny-demo', params: { ...QUICK, resolution: 128, max_steps: 40 },
      })).json();
      await until(ctx, run.id, (r) => r.status === 'running' || finished(r));
      let ticks = 0;
      const timer = setInterval(() => ticks++, 10);
      let answered = 0;
      let trainingWhileAnswered = 0;
      for (let i = 0; i < 20; i++) {
        const response = await request(ctx, 'GET', `/v1/training-runs/${run.id}`);
        assert.equal(response.statusCode, 200);
        answered++;
        if (response.json().status === 'running') trainingWhileAnswered++;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      clearInterval(timer);
      assert.ok(trainingWhileAnswered > 0, 'some answers came while the run trained');
      assert.ok(ticks >= 10, `the timer fired ${ticks} times`);
      assert.equal(answered, 20);
      assert.equal((await until(ctx, run.id, finished)).status, 'succeeded');
    });
  });
}
