// /v1/datasets/{id}/images and /v1/images/{id}: upload (files, zips, captions, duplicates),
// list, read, download, delete, blob lifecycle and tenant isolation, on Postgres and PGlite.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ImagesService } from '../../../src/services/images.js';
import { uploadLimits } from '../../../src/services/image-limits.js';
import { FsBlobStore } from '../../../src/storage/fs-blob-store.js';
import { DATABASE_MODES, withTestApp } from '../../helper.js';
import { jpeg, png, webp } from '../../support/images.js';
import { listBlobFiles } from '../../support/image-store-state.js';
import { createDataset, imageCount, upload } from '../../support/images-api.js';
import { filesBody, multipart } from '../../support/multipart.js';
import { buildZip } from '../../support/zip.js';

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
const blobPath = (hash: string): string => join('sha256', hash.slice(0, 2), hash.slice(2, 4), hash);
let seed = 1000;
/** Distinct bytes on every call. */
const nextSeed = (): number => ++seed;

for (const mode of DATABASE_MODES) {
  describe(`images on ${mode.name}`, () => {
    test('uploads several files in one request and stores them content-addressed', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const datasetId = await createDataset(ctx);
      const a = await jpeg({ width: 320, height: 256, seed: nextSeed() });
      const b = await png({ width: 256, height: 300, seed: nextSeed() });
      const c = await webp({ width: 400, height: 400, seed: nextSeed() });
      const response = await upload(ctx, datasetId, filesBody([
        { name: 'a.jpg', data: a },
        { name: 'b.png', data: b, contentType: 'image/png' },
        { name: 'c.webp', data: c, contentType: 'application/octet-stream' },
      ]));
      assert.equal(response.statusCode, 201, response.body);
      const { data } = response.json();
      assert.equal(data.length, 3);
      assert.deepEqual(data.map((i: { format: string }) => i.format), ['jpeg', 'png', 'webp']);
      assert.deepEqual(data.map((i: { media_type: string }) => i.media_type), ['image/jpeg', 'image/png', 'image/webp']);
      assert.deepEqual(data.map((i: { width: number, height: number }) => [i.width, i.height]), [[320, 256], [256, 300], [400, 400]]);
      assert.deepEqual(data.map((i: { sha256: string }) => i.sha256), [sha256(a), sha256(b), sha256(c)]);
      assert.deepEqual(data.map((i: { byte_size: number }) => i.byte_size), [a.length, b.length, c.length]);
      assert.deepEqual(data.map((i: { duplicate: boolean }) => i.duplicate), [false, false, false]);
      assert.equal(data[0].original_filename, 'a.jpg');
      assert.equal(data[0].dataset_id, datasetId);
      assert.equal(data[0].caption, null);
      assert.match(data[0].id, /^img_[0-9A-HJKMNP-TV-Z]{26}$/);
      assert.equal(data[0].content_url, `/v1/images/${data[0].id}/content`);

      const files = await listBlobFiles(ctx.config.dataDir);
      for (const bytes of [a, b, c]) {
        assert.ok(files.includes(blobPath(sha256(bytes))));
        assert.deepEqual(await readFile(join(ctx.config.dataDir, 'blobs', blobPath(sha256(bytes)))), bytes);
      }
      assert.equal(await imageCount(ctx, datasetId), 3);
    });

    test('accepts the field name "file" as well', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const datasetId = await createDataset(ctx);
      const response = await upload(ctx, datasetId, filesBody([{ name: 'one.jpg', data: await jpeg({ width: 300, height: 300, seed: nextSeed() }) }], 'file'));
      assert.equal(response.statusCode, 201, response.body);
      assert.equal(response.json().data.length, 1);
    });

    test('duplicates come back as the existing image: 200 when all are, 201 with flags when mixed', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const datasetId = await createDataset(ctx);
      const bytes = await jpeg({ width: 300, height: 300, seed: nextSeed() });
      const first = await upload(ctx, datasetId, filesBody([{ name: 'x.jpg', data: bytes }]));
      assert.equal(first.statusCode, 201);
      const original = first.json().data[0];

      const again = await upload(ctx, datasetId, filesBody([{ name: 'renamed.jpg', data: bytes }]));
      assert.equal(again.statusCode, 200, again.body);
      assert.deepEqual(again.json().data, [{ ...original, duplicate: true }]);

      const other = await jpeg({ width: 300, height: 300, seed: nextSeed() });
      const mixed = await upload(ctx, datasetId, filesBody([{ name: 'x.jpg', data: bytes }, { name: 'y.jpg', data: other }, { name: 'y2.jpg', data: other }]));
      assert.equal(mixed.statusCode, 201, mixed.body);
      const data = mixed.json().data;
      assert.deepEqual(data.map((i: { duplicate: boolean }) => i.duplicate), [true, false, true]);
      assert.equal(data[0].id, original.id);
      assert.equal(data[1].id, data[2].id);
      assert.equal(await imageCount(ctx, datasetId), 2);
    });

    test('uploads a zip with caption sidecars, skipping folders, __MACOSX and dotfiles', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const datasetId = await createDataset(ctx);
      const one = await jpeg({ width: 300, height: 300, seed: nextSeed() });
      const two = await png({ width: 300, height: 300, seed: nextSeed() });
      const zip = buildZip([
        { name: 'rex/', data: '', method: 'store' },
        { name: 'rex/img01.jpg', data: one },
        { name: 'rex/img01.txt', data: 'a photo of ohwx dog on a beach\n' },
        { name: 'rex/img02.png', data: two, method: 'store' },
        { name: 'rex/notes.txt', data: 'a caption without an image is ignored' },
        { name: '__MACOSX/rex/._img01.jpg', data: 'resource fork' },
        { name: 'rex/.DS_Store', data: 'finder data' },
      ]);
      const response = await upload(ctx, datasetId, filesBody([{ name: 'rex.zip', data: zip, contentType: 'application/zip' }]));
      assert.equal(response.statusCode, 201, response.body);
      const data = response.json().data;
      assert.deepEqual(data.map((i: { original_filename: string }) => i.original_filename), ['rex/img01.jpg', 'rex/img02.png']);
      assert.equal(data[0].caption, 'a photo of ohwx dog on a beach');
      assert.equal(data[0].caption_source, 'upload');
      assert.equal(data[1].caption, null);
      assert.equal(data[1].caption_source, null);
      const stored = await ctx.db.query<{ caption: string | null }>('SELECT caption FROM images WHERE id = $1', [data[0].id]);
      assert.equal(stored.rows[0]!.caption, 'a photo of ohwx dog on a beach');
    });

    test('pairs caption .txt parts with image parts of the same name', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const datasetId = await createDataset(ctx);
      const response = await upload(ctx, datasetId, multipart([
        { field: 'files', filename: 'img01.jpg', contentType: 'image/jpeg', data: await jpeg({ width: 300, height: 300, seed: nextSeed() }) },
        { field: 'files', filename: 'img01.txt', contentType: 'text/plain', data: 'ohwx dog, studio light' },
      ]));
      assert.equal(response.statusCode, 201, response.body);
      assert.deepEqual(response.json().data.map((i: { caption: string }) => i.caption), ['ohwx dog, studio light']);
    });

    test('keeps the client file name only as a cleaned, capped label', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const datasetId = await createDataset(ctx);
      const response = await upload(ctx, datasetId, filesBody([
        { name: 'nul\u0000and\u0007bell.jpg', data: await jpeg({ width: 300, height: 300, seed: nextSeed() }) },
        { name: `${'n'.repeat(1000)}.jpg`, data: await jpeg({ width: 300, height: 300, seed: nextSeed() }) },
      ]));
      assert.equal(response.statusCode, 201, response.body);
      const [a, b] = response.json().data;
      assert.equal(a.original_filename, 'nulandbell.jpg');
      assert.equal(b.original_filename, 'n'.repeat(255));
    });

    test('records EXIF-oriented dimensions: a 300x200 JPEG with orientation 6 is 200x300', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded, env: { IMAGE_MIN_SIDE: '100' } });
      const datasetId = await createDataset(ctx);
      const response = await upload(ctx, datasetId, filesBody([{ name: 'rotated.jpg', data: await jpeg({ width: 300, height: 200, orientation: 6, seed: nextSeed() }) }]));
      assert.equal(response.statusCode, 201, response.body);
      const [image] = response.json().data;
      assert.deepEqual([image.width, image.height], [200, 300]);
    });

    test('lists images newest first with a cursor, and reads one', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const datasetId = await createDataset(ctx);
      const files = [];
      for (let i = 0; i < 5; i++) files.push({ name: `p${i}.jpg`, data: await jpeg({ width: 260, height: 260, seed: nextSeed() }) });
      const uploaded = await upload(ctx, datasetId, filesBody(files));
      assert.equal(uploaded.statusCode, 201);
      const ids = uploaded.json().data.map((i: { id: string }) => i.id).reverse();

      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const url: string = `/v1/datasets/${datasetId}/images?limit=2${cursor === null ? '' : `&cursor=${cursor}`}`;
        const page = await ctx.app.inject({ method: 'GET', url, headers: ctx.auth });
        assert.equal(page.statusCode, 200, page.body);
        const body = page.json();
        assert.ok(body.data.length <= 2);
        seen.push(...body.data.map((i: { id: string }) => i.id));
        cursor = body.next_cursor;
      } while (cursor !== null);
      assert.deepEqual(seen, ids);

      const one = await ctx.app.inject({ method: 'GET', url: `/v1/images/${ids[0]}`, headers: ctx.auth });
      assert.equal(one.statusCode, 200);
      const { duplicate, ...expected } = uploaded.json().data[4];
      assert.equal(duplicate, false);
      assert.deepEqual(one.json(), expected);
    });

    test('downloads the stored bytes with their media type and a SHA-256 ETag', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const datasetId = await createDataset(ctx);
      const bytes = await png({ width: 280, height: 280, seed: nextSeed() });
      const [image] = (await upload(ctx, datasetId, filesBody([{ name: 'x.png', data: bytes, contentType: 'image/png' }]))).json().data;
      const content = await ctx.app.inject({ method: 'GET', url: `/v1/images/${image.id}/content`, headers: ctx.auth });
      assert.equal(content.statusCode, 200);
      assert.equal(content.headers['content-type'], 'image/png');
      assert.equal(content.headers.etag, `"${sha256(bytes)}"`);
      assert.equal(Number(content.headers['content-length']), bytes.length);
      assert.deepEqual(content.rawPayload, bytes);

      const cached = await ctx.app.inject({
        method: 'GET',
        url: `/v1/images/${image.id}/content`,
        headers: { ...ctx.auth, 'if-none-match': `"${sha256(bytes)}"` },
      });
      assert.equal(cached.statusCode, 304);
      assert.equal(cached.rawPayload.length, 0);
    });

    test('delete removes the row and the blob, unless another dataset holds the same bytes', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const first = await createDataset(ctx);
      const second = await createDataset(ctx);
      const shared = await jpeg({ width: 300, height: 300, seed: nextSeed() });
      const own = await jpeg({ width: 300, height: 300, seed: nextSeed() });
      const [a, b] = (await upload(ctx, first, filesBody([{ name: 'shared.jpg', data: shared }, { name: 'own.jpg', data: own }]))).json().data;
      const [c] = (await upload(ctx, second, filesBody([{ name: 'shared.jpg', data: shared }]))).json().data;
      assert.equal(c.duplicate, false, 'another dataset with the same bytes gets its own image');

      const deleted = await ctx.app.inject({ method: 'DELETE', url: `/v1/images/${b.id}`, headers: ctx.auth });
      assert.equal(deleted.statusCode, 204);
      assert.ok(!(await listBlobFiles(ctx.config.dataDir)).includes(blobPath(sha256(own))));
      assert.equal((await ctx.app.inject({ method: 'GET', url: `/v1/images/${b.id}`, headers: ctx.auth })).statusCode, 404);
      assert.equal(await imageCount(ctx, first), 1);

      assert.equal((await ctx.app.inject({ method: 'DELETE', url: `/v1/images/${a.id}`, headers: ctx.auth })).statusCode, 204);
      assert.ok((await listBlobFiles(ctx.config.dataDir)).includes(blobPath(sha256(shared))), 'still referenced by the second dataset');
      const content = await ctx.app.inject({ method: 'GET', url: `/v1/images/${c.id}/content`, headers: ctx.auth });
      assert.deepEqual(content.rawPayload, shared);

      assert.equal((await ctx.app.inject({ method: 'DELETE', url: `/v1/images/${c.id}`, headers: ctx.auth })).statusCode, 204);
      assert.ok(!(await listBlobFiles(ctx.config.dataDir)).includes(blobPath(sha256(shared))));
      assert.equal((await ctx.app.inject({ method: 'DELETE', url: `/v1/images/${c.id}`, headers: ctx.auth })).statusCode, 404);
      const queued = await ctx.db.query('SELECT sha256 FROM blob_releases WHERE sha256 = ANY($1::text[])', [[sha256(shared), sha256(own)]]);
      assert.equal(queued.rows.length, 0);
    });

    test('deleting a dataset deletes its images and their unshared blobs', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const datasetId = await createDataset(ctx);
      const keepId = await createDataset(ctx);
      const gone = await jpeg({ width: 300, height: 300, seed: nextSeed() });
      const kept = await jpeg({ width: 300, height: 300, seed: nextSeed() });
      const [image] = (await upload(ctx, datasetId, filesBody([{ name: 'g.jpg', data: gone }, { name: 'k.jpg', data: kept }]))).json().data;
      assert.equal((await upload(ctx, keepId, filesBody([{ name: 'k.jpg', data: kept }]))).statusCode, 201);

      const response = await ctx.app.inject({ method: 'DELETE', url: `/v1/datasets/${datasetId}`, headers: ctx.auth });
      assert.equal(response.statusCode, 204);
      const rows = await ctx.db.query('SELECT id FROM images WHERE dataset_id = $1', [datasetId]);
      assert.equal(rows.rows.length, 0);
      assert.equal((await ctx.app.inject({ method: 'GET', url: `/v1/images/${image.id}`, headers: ctx.auth })).statusCode, 404);
      const files = await listBlobFiles(ctx.config.dataDir);
      assert.ok(!files.includes(blobPath(sha256(gone))));
      assert.ok(files.includes(blobPath(sha256(kept))));
    });

    test('another tenant sees none of it: 404 on its images and datasets', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const datasetId = await createDataset(ctx);
      const bytes = await jpeg({ width: 300, height: 300, seed: nextSeed() });
      const [image] = (await upload(ctx, datasetId, filesBody([{ name: 'x.jpg', data: bytes }]))).json().data;
      const otherKey = await ctx.createTenantKey();
      const other = { authorization: `Bearer ${otherKey}` };
      for (const [method, url] of [
        ['GET', `/v1/images/${image.id}`],
        ['GET', `/v1/images/${image.id}/content`],
        ['DELETE', `/v1/images/${image.id}`],
        ['GET', `/v1/datasets/${datasetId}/images`],
      ] as const) {
        const response = await ctx.app.inject({ method, url, headers: other });
        assert.equal(response.statusCode, 404, `${method} ${url}`);
        assert.equal(response.json().type, 'tag:sdxl-lora-service,2026:problem:not-found');
      }
      const uploadByOther = await upload(ctx, datasetId, filesBody([{ name: 'y.jpg', data: await jpeg({ width: 300, height: 300, seed: nextSeed() }) }]), otherKey);
      assert.equal(uploadByOther.statusCode, 404);
      assert.equal((await ctx.app.inject({ method: 'GET', url: `/v1/images/${image.id}`, headers: ctx.auth })).statusCode, 200);
      assert.equal(await imageCount(ctx, datasetId), 1);
    });

    test('two concurrent uploads cannot overrun the per-dataset cap', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded, env: { DATASET_MAX_IMAGES: '3' } });
      const datasetId = await createDataset(ctx);
      const bodies = [];
      for (let r = 0; r < 2; r++) {
        bodies.push(filesBody([
          { name: 'a.jpg', data: await jpeg({ width: 260, height: 260, seed: nextSeed() }) },
          { name: 'b.jpg', data: await jpeg({ width: 260, height: 260, seed: nextSeed() }) },
        ]));
      }
      const responses = await Promise.all(bodies.map((body) => upload(ctx, datasetId, body)));
      assert.deepEqual(responses.map((r) => r.statusCode).sort(), [201, 409]);
      assert.equal(await imageCount(ctx, datasetId), 2);
      const rows = await ctx.db.query('SELECT id FROM images WHERE dataset_id = $1', [datasetId]);
      assert.equal(rows.rows.length, 2);
    });

    test('a blob that fails to unlink stays queued and the next collection finishes it', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const datasetId = await createDataset(ctx);
      const bytes = await jpeg({ width: 300, height: 300, seed: nextSeed() });
      const [image] = (await upload(ctx, datasetId, filesBody([{ name: 'x.jpg', data: bytes }]))).json().data;
      const blobs = new FsBlobStore(join(ctx.config.dataDir, 'blobs'));
      // A store whose unlink fails, as on a read-only or flaky volume.
      const failing = Object.assign(Object.create(blobs) as FsBlobStore, { delete: async () => { throw new Error('EROFS'); } });
      const broken = new ImagesService(ctx.db, failing, uploadLimits(ctx.config));
      const { row, collection } = await broken.delete(ctx.tenantId, image.id);
      assert.equal(row?.id, image.id);
      assert.deepEqual(collection.failures.map((f) => f.sha256), [sha256(bytes)]);
      assert.equal(await blobs.exists(sha256(bytes)), true);
      const queued = await ctx.db.query('SELECT sha256 FROM blob_releases WHERE sha256 = $1', [sha256(bytes)]);
      assert.equal(queued.rows.length, 1);

      const working = new ImagesService(ctx.db, blobs, uploadLimits(ctx.config));
      const again = await working.collectReleasedBlobs();
      assert.equal(again.failures.length, 0);
      assert.equal(await blobs.exists(sha256(bytes)), false);
      assert.equal((await ctx.db.query('SELECT sha256 FROM blob_releases WHERE sha256 = $1', [sha256(bytes)])).rows.length, 0);
    });

    test('the orphan sweep unlinks blobs no row references and keeps the others', async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded });
      const datasetId = await createDataset(ctx);
      const kept = await jpeg({ width: 300, height: 300, seed: nextSeed() });
      assert.equal((await upload(ctx, datasetId, filesBody([{ name: 'k.jpg', data: kept }]))).statusCode, 201);
      const blobs = new FsBlobStore(join(ctx.config.dataDir, 'blobs'));
      // As if a request had died between writing its blob and committing its row.
      const orphan = await blobs.put(Buffer.from('orphaned bytes'));
      const service = new ImagesService(ctx.db, blobs, uploadLimits(ctx.config));
      assert.ok((await service.sweepOrphanBlobs()) >= 1);
      assert.equal(await blobs.exists(orphan.sha256), false);
      assert.equal(await blobs.exists(sha256(kept)), true);
    });
  });
}
