// /v1/datasets/{id}/captions (list, bulk edit, export) and /v1/images/{id}/caption (read,
// edit, history), then every bad input to the caption and captioning-job routes: each
// answers a problem+json naming what is wrong and changes nothing; on Postgres and PGlite.
import assert from 'node:assert/strict';
import { crc32 } from 'node:zlib';
import { describe, test } from 'node:test';
import yauzl from 'yauzl';
import { DATABASE_MODES, type TestApp } from '../../helper.js';
import { captionsOf, datasetWithPhotos, startJob, uploadPhotos, withCaptioningApp } from '../../support/captioning.js';
import { jpeg } from '../../support/images.js';
import { createDataset, upload } from '../../support/images-api.js';
import { filesBody } from '../../support/multipart.js';

const PROBLEM = 'tag:sdxl-lora-service,2026:problem:';
const MAX_CHARS = 100;

/** Every entry of a zip, checking each one's CRC-32 against its bytes. */
function readZip(archive: Buffer): Promise<Map<string, Buffer>> {
  return new Promise((resolve, reject) => {
    yauzl.fromBuffer(archive, { lazyEntries: true }, (error, zip) => {
      if (error || !zip) return reject(error);
      const out = new Map<string, Buffer>();
      zip.on('entry', (entry: yauzl.Entry) => {
        zip.openReadStream(entry, (streamError, stream) => {
          if (streamError || !stream) return reject(streamError);
          const chunks: Buffer[] = [];
          stream.on('data', (c: Buffer) => chunks.push(c));
          stream.on('end', () => {
            const data = Buffer.concat(chunks);
            if (crc32(data) !== entry.crc32) reject(new Error(`CRC of ${entry.fileName} does not match`));
            out.set(entry.fileName, data);
            zip.readEntry();
          });
        });
      });
      zip.on('end', () => resolve(out));
      zip.on('error', reject);
      zip.readEntry();
    });
  });
}

async function putCaption(ctx: TestApp, imageId: string, caption: unknown, key = ctx.apiKey) {
  return ctx.app.inject({ method: 'PUT', url: `/v1/images/${imageId}/caption`, headers: { authorization: `Bearer ${key}` }, payload: { caption } });
}

for (const mode of DATABASE_MODES) {
  describe(`captions on ${mode.name}`, () => {
    test('a manual edit becomes the current caption; the history keeps every version', async (t) => {
      const ctx = await withCaptioningApp(t, { embedded: mode.embedded });
      const { datasetId, imageIds } = await datasetWithPhotos(ctx, 2, { 1: 'ohwx dog from the sidecar' });
      const [image] = imageIds as [string];

      const read = await ctx.app.inject({ method: 'GET', url: `/v1/images/${image}/caption`, headers: ctx.auth });
      assert.equal(read.statusCode, 200, read.body);
      assert.equal(read.json().current.source, 'upload', 'a sidecar caption is the first history row, source upload');
      assert.equal(read.json().current.usage, null);

      const put = await putCaption(ctx, image, '  ohwx dog on a red sofa \n');
      assert.equal(put.statusCode, 200, put.body);
      const current = put.json().current;
      assert.equal(current.caption, 'ohwx dog on a red sofa');
      assert.equal(current.source, 'manual');
      assert.equal(current.model, null);
      assert.equal(current.cost_usd, null);
      assert.match(current.id, /^cap_/);
      // Saving the same text again adds no version.
      assert.equal((await putCaption(ctx, image, 'ohwx dog on a red sofa')).json().current.id, current.id);

      const history = await ctx.app.inject({ method: 'GET', url: `/v1/images/${image}/caption/history?limit=1`, headers: ctx.auth });
      assert.equal(history.statusCode, 200, history.body);
      assert.deepEqual(history.json().data.map((c: { source: string; current: boolean }) => [c.source, c.current]), [['manual', true]]);
      const older = await ctx.app.inject({ method: 'GET', url: `/v1/images/${image}/caption/history?limit=1&cursor=${history.json().next_cursor}`, headers: ctx.auth });
      assert.deepEqual(older.json().data.map((c: { source: string; caption: string; current: boolean }) => [c.source, c.caption, c.current]), [['upload', 'ohwx dog from the sidecar', false]]);
      assert.equal(older.json().next_cursor, null);

      const image2 = await ctx.app.inject({ method: 'GET', url: `/v1/images/${image}`, headers: ctx.auth });
      assert.equal(image2.json().caption, 'ohwx dog on a red sofa');
      assert.equal(image2.json().caption_source, 'manual');

      const list = await ctx.app.inject({ method: 'GET', url: `/v1/datasets/${datasetId}/captions?limit=1`, headers: ctx.auth });
      assert.equal(list.statusCode, 200, list.body);
      assert.deepEqual(list.json().data.map((d: { image_id: string }) => d.image_id), [imageIds[1]], 'newest image first');
      assert.equal(list.json().data[0].current, null);
      assert.ok(list.json().next_cursor);
    });

    test('a bulk update stores every caption or none', async (t) => {
      const ctx = await withCaptioningApp(t, { embedded: mode.embedded });
      const { datasetId, imageIds } = await datasetWithPhotos(ctx, 3);
      const other = await withCaptioningApp(t, { embedded: mode.embedded });
      const { imageIds: [foreign] } = await datasetWithPhotos(other, 1);

      const refused = await ctx.app.inject({
        method: 'PATCH', url: `/v1/datasets/${datasetId}/captions`, headers: ctx.auth,
        payload: { captions: [{ image_id: imageIds[0], caption: 'ohwx dog one' }, { image_id: foreign, caption: 'ohwx dog stolen' }] },
      });
      assert.equal(refused.statusCode, 400, refused.body);
      assert.deepEqual(refused.json().errors.map((e: { field: string }) => e.field), ['captions.1.image_id']);
      assert.equal((await captionsOf(ctx, datasetId)).get(imageIds[0]!), null, 'nothing stored');

      const stored = await ctx.app.inject({
        method: 'PATCH', url: `/v1/datasets/${datasetId}/captions`, headers: ctx.auth,
        payload: { captions: [{ image_id: imageIds[2], caption: 'ohwx dog three' }, { image_id: imageIds[0], caption: 'ohwx dog one' }] },
      });
      assert.equal(stored.statusCode, 200, stored.body);
      assert.deepEqual(stored.json().data.map((d: { image_id: string; current: { caption: string } }) => [d.image_id, d.current.caption]), [
        [imageIds[2], 'ohwx dog three'],
        [imageIds[0], 'ohwx dog one'],
      ]);
      const captions = await captionsOf(ctx, datasetId);
      assert.equal(captions.get(imageIds[1]!), null);
      assert.equal(captions.get(imageIds[2]!).source, 'manual');
    });

    test('export: one kohya name.txt per captioned image, optionally with the images; it uploads back as is', async (t) => {
      const ctx = await withCaptioningApp(t, { embedded: mode.embedded });
      const datasetId = await createDataset(ctx);
      const a = await jpeg({ width: 256, height: 256, seed: 91_001 });
      const b = await jpeg({ width: 256, height: 256, seed: 91_002 });
      const c = await jpeg({ width: 256, height: 256, seed: 91_003 });
      const uploaded = await upload(ctx, datasetId, filesBody([{ name: 'img01.jpg', data: a }, { name: 'img01.JPG', data: b }, { name: 'plain.jpg', data: c }]));
      assert.equal(uploaded.statusCode, 201, uploaded.body);
      const [ia, ib] = (uploaded.json().data as Array<{ id: string }>).map((d) => d.id) as [string, string];
      assert.equal((await putCaption(ctx, ia, 'ohwx dog,\nfirst line\nsecond line')).statusCode, 200);
      assert.equal((await putCaption(ctx, ib, 'ohwx dog, ünïcode')).statusCode, 200);

      const sidecars = await ctx.app.inject({ method: 'GET', url: `/v1/datasets/${datasetId}/captions/export`, headers: ctx.auth });
      assert.equal(sidecars.statusCode, 200, sidecars.body);
      assert.equal(sidecars.headers['content-type'], 'application/zip');
      assert.match(String(sidecars.headers['content-disposition']), new RegExp(`attachment; filename="${datasetId}-captions.zip"`));
      const entries = await readZip(sidecars.rawPayload);
      assert.deepEqual([...entries.keys()], ['img01.txt', 'img01_2.txt'], 'uncaptioned images have no sidecar; a repeated name gets _2');
      assert.equal(entries.get('img01.txt')!.toString('utf8'), 'ohwx dog, first line second line', 'one line, as kohya reads it');
      assert.equal(entries.get('img01_2.txt')!.toString('utf8'), 'ohwx dog, ünïcode');

      const full = await ctx.app.inject({ method: 'GET', url: `/v1/datasets/${datasetId}/captions/export?include_images=true`, headers: ctx.auth });
      assert.equal(full.statusCode, 200);
      const files = await readZip(full.rawPayload);
      assert.deepEqual([...files.keys()], ['img01.jpg', 'img01.txt', 'img01_2.jpg', 'img01_2.txt', 'plain.jpg']);
      assert.deepEqual(files.get('img01_2.jpg'), b);

      // The export is a dataset folder this service (and kohya) reads back.
      const copy = await createDataset(ctx);
      const reimported = await upload(ctx, copy, filesBody([{ name: 'export.zip', data: full.rawPayload, contentType: 'application/zip' }]));
      assert.equal(reimported.statusCode, 201, reimported.body);
      assert.deepEqual(
        reimported.json().data.map((d: { original_filename: string; caption: string | null; caption_source: string | null }) => [d.original_filename, d.caption, d.caption_source]),
        [['img01.jpg', 'ohwx dog, first line second line', 'upload'], ['img01_2.jpg', 'ohwx dog, ünïcode', 'upload'], ['plain.jpg', null, null]],
      );
    });

    test(`bad caption and captioning-job requests answer a problem naming the fault and change nothing`, async (t) => {
      // No worker: jobs stay queued, so "already running" and "cancel a queued job" are reachable.
      const ctx = await withCaptioningApp(t, { embedded: mode.embedded, env: { CAPTION_MAX_CHARS: String(MAX_CHARS), CAPTION_WORKER_JOBS: '0' } });
      const { datasetId, imageIds } = await datasetWithPhotos(ctx, 2);
      const { datasetId: emptyId } = await datasetWithPhotos(ctx, 0);
      const otherKey = await ctx.createTenantKey();
      const otherDataset = await createDataset(ctx, otherKey);
      const other = { ...ctx, apiKey: otherKey, auth: { authorization: `Bearer ${otherKey}` } };
      const [foreign] = await uploadPhotos(other, otherDataset, 1);
      const [image] = imageIds as [string];
      const queued = await startJob(ctx, datasetId, { provider: 'template' });
      const foreignJob = await startJob(other, otherDataset, { provider: 'template' });
      // A finished job of the other tenant: canceled while queued.
      const otherDataset2 = await createDataset(other, otherKey);
      await uploadPhotos(other, otherDataset2, 1);
      const finished = await startJob(other, otherDataset2, {});
      assert.equal((await other.app.inject({ method: 'POST', url: `/v1/captioning-jobs/${finished.id}/cancel`, headers: other.auth })).statusCode, 202);
      const unknown = 'img_01JD3Q5V8Z6ZK2W7M4N1T0X9PA';

      const snapshot = async () => [
        (await ctx.db.query('SELECT id, image_id, caption, source, is_current FROM image_captions ORDER BY id')).rows,
        (await ctx.db.query('SELECT id, status, cancel_requested_at FROM captioning_jobs ORDER BY id')).rows,
      ];
      const before = await snapshot();
      const jobsUrl = (id: string) => `/v1/datasets/${id}/captioning-jobs`;
      const cases: Array<{ name: string; method: 'GET' | 'POST' | 'PUT' | 'PATCH'; url: string; body?: unknown; key?: string; status: number; type?: string; field?: string }> = [
        { name: 'job on an unknown dataset', method: 'POST', url: jobsUrl('ds_01JD3Q5V8Z6ZK2W7M4N1T0X9PA'), body: {}, status: 404, type: 'not-found' },
        { name: 'job on another tenant\'s dataset', method: 'POST', url: jobsUrl(otherDataset), body: {}, status: 404, type: 'not-found' },
        { name: 'job on an empty dataset', method: 'POST', url: jobsUrl(emptyId), body: { provider: 'template' }, status: 409, type: 'dataset-empty' },
        { name: 'unknown provider', method: 'POST', url: jobsUrl(datasetId), body: { provider: 'gpt-vision' }, status: 400, type: 'validation-error', field: 'provider' },
        { name: 'provider not configured', method: 'POST', url: jobsUrl(datasetId), body: { provider: 'openai-compatible' }, status: 422, type: 'provider-not-configured', field: 'provider' },
        { name: 'anthropic without a key', method: 'POST', url: jobsUrl(datasetId), body: { provider: 'anthropic' }, status: 422, type: 'provider-not-configured', field: 'provider' },
        { name: 'another tenant\'s image in image_ids', method: 'POST', url: jobsUrl(datasetId), body: { image_ids: [image, foreign] }, status: 400, type: 'validation-error', field: 'image_ids.1' },
        { name: 'an unknown image in image_ids', method: 'POST', url: jobsUrl(datasetId), body: { image_ids: [unknown] }, status: 400, type: 'validation-error', field: 'image_ids.0' },
        { name: 'image_ids repeated', method: 'POST', url: jobsUrl(datasetId), body: { image_ids: [image, image] }, status: 400, type: 'validation-error', field: 'image_ids' },
        { name: 'image_ids empty', method: 'POST', url: jobsUrl(datasetId), body: { image_ids: [] }, status: 400, type: 'validation-error', field: 'image_ids' },
        { name: 'style hint too long', method: 'POST', url: jobsUrl(datasetId), body: { style_hint: 'x'.repeat(301) }, status: 400, type: 'validation-error', field: 'style_hint' },
        { name: 'overwrite as a string', method: 'POST', url: jobsUrl(datasetId), body: { overwrite: 'yes' }, status: 400, type: 'validation-error', field: 'overwrite' },
        { name: 'unknown job option', method: 'POST', url: jobsUrl(datasetId), body: { api_key: 'sk-ant-x' }, status: 400, type: 'validation-error', field: 'api_key' },
        { name: 'a second job while one is queued', method: 'POST', url: jobsUrl(datasetId), body: { provider: 'template' }, status: 409, type: 'captioning-job-active' },
        { name: 'another tenant\'s job', method: 'GET', url: `/v1/captioning-jobs/${foreignJob.id}`, status: 404, type: 'not-found' },
        { name: 'cancel another tenant\'s job', method: 'POST', url: `/v1/captioning-jobs/${foreignJob.id}/cancel`, status: 404, type: 'not-found' },
        { name: 'cancel an unknown job', method: 'POST', url: '/v1/captioning-jobs/cj_01JD3Q5V8Z6ZK2W7M4N1T0X9PA/cancel', status: 404, type: 'not-found' },
        { name: 'cancel a finished job', method: 'POST', url: `/v1/captioning-jobs/${finished.id}/cancel`, key: otherKey, status: 409, type: 'captioning-job-finished' },
        { name: 'jobs of an unknown dataset', method: 'GET', url: jobsUrl('nope'), status: 404, type: 'not-found' },
        { name: 'caption over the length limit', method: 'PUT', url: `/v1/images/${image}/caption`, body: { caption: 'o'.repeat(MAX_CHARS + 1) }, status: 400, type: 'validation-error', field: 'caption' },
        { name: 'blank caption', method: 'PUT', url: `/v1/images/${image}/caption`, body: { caption: ' \n ' }, status: 400, type: 'validation-error', field: 'caption' },
        { name: 'caption of the wrong type', method: 'PUT', url: `/v1/images/${image}/caption`, body: { caption: 42 }, status: 400, type: 'validation-error', field: 'caption' },
        { name: 'caption with an unknown field', method: 'PUT', url: `/v1/images/${image}/caption`, body: { caption: 'ohwx dog', source: 'anthropic' }, status: 400, type: 'validation-error', field: 'source' },
        { name: 'caption of another tenant\'s image', method: 'PUT', url: `/v1/images/${foreign}/caption`, body: { caption: 'ohwx dog' }, status: 404, type: 'not-found' },
        { name: 'caption of an unknown image', method: 'GET', url: `/v1/images/${unknown}/caption`, status: 404, type: 'not-found' },
        { name: 'history of another tenant\'s image', method: 'GET', url: `/v1/images/${foreign}/caption/history`, status: 404, type: 'not-found' },
        { name: 'history with a forged cursor', method: 'GET', url: `/v1/images/${image}/caption/history?cursor=${Buffer.from('{"after":"x"}').toString('base64url')}`, status: 400, type: 'validation-error', field: 'cursor' },
        { name: 'bulk caption over the length limit', method: 'PATCH', url: `/v1/datasets/${datasetId}/captions`, body: { captions: [{ image_id: image, caption: 'ohwx dog' }, { image_id: imageIds[1], caption: 'o'.repeat(MAX_CHARS + 1) }] }, status: 400, type: 'validation-error', field: 'captions.1.caption' },
        { name: 'bulk with an image twice', method: 'PATCH', url: `/v1/datasets/${datasetId}/captions`, body: { captions: [{ image_id: image, caption: 'ohwx dog' }, { image_id: image, caption: 'ohwx dog 2' }] }, status: 400, type: 'validation-error', field: 'captions.1.image_id' },
        { name: 'bulk with another tenant\'s image', method: 'PATCH', url: `/v1/datasets/${datasetId}/captions`, body: { captions: [{ image_id: foreign, caption: 'ohwx dog' }] }, status: 400, type: 'validation-error', field: 'captions.0.image_id' },
        { name: 'bulk with no captions', method: 'PATCH', url: `/v1/datasets/${datasetId}/captions`, body: { captions: [] }, status: 400, type: 'validation-error', field: 'captions' },
        { name: 'bulk on another tenant\'s dataset', method: 'PATCH', url: `/v1/datasets/${otherDataset}/captions`, body: { captions: [{ image_id: foreign, caption: 'ohwx dog' }] }, status: 404, type: 'not-found' },
        { name: 'captions of an unknown dataset', method: 'GET', url: '/v1/datasets/ds_01JD3Q5V8Z6ZK2W7M4N1T0X9PA/captions', status: 404, type: 'not-found' },
        { name: 'export of another tenant\'s dataset', method: 'GET', url: `/v1/datasets/${otherDataset}/captions/export`, status: 404, type: 'not-found' },
        { name: 'export with a bad flag', method: 'GET', url: `/v1/datasets/${datasetId}/captions/export?include_images=maybe`, status: 400, type: 'validation-error', field: 'include_images' },
      ];
      for (const c of cases) {
        await t.test(c.name, async () => {
          const response = await ctx.app.inject({
            method: c.method,
            url: c.url,
            headers: { authorization: `Bearer ${c.key ?? ctx.apiKey}` },
            ...(c.body !== undefined ? { payload: c.body as object } : {}),
          });
          assert.equal(response.statusCode, c.status, response.body);
          assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
          const problem = response.json();
          assert.equal(problem.status, c.status);
          assert.equal(typeof problem.detail, 'string');
          assert.equal(problem.instance, c.url.split('?')[0]);
          if (c.type) assert.equal(problem.type, PROBLEM + c.type);
          if (c.field) {
            const named = (problem.errors ?? []).find((e: { field: string }) => e.field === c.field);
            assert.ok(named, `errors name ${c.field}: ${JSON.stringify(problem.errors)}`);
          }
        });
      }
      assert.deepEqual(await snapshot(), before, 'no caption and no job changed');
      // The queued job is still cancelable, at once, without a worker.
      const cancel = await ctx.app.inject({ method: 'POST', url: `/v1/captioning-jobs/${queued.id}/cancel`, headers: ctx.auth });
      assert.equal(cancel.statusCode, 202, cancel.body);
      assert.equal(cancel.json().status, 'canceled');
      assert.equal(cancel.json().progress.canceled, 2);
    });
  });
}
