// GET /v1/images/{id}/content?variant=thumbnail: a WebP that fits inside 256x256, EXIF
// orientation applied, never enlarged; its own ETag; made once, cached under
// DATA_DIR/thumbnails, and deleted with the image's blob.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { ThumbnailCache } from '../../../src/services/thumbnails.js';
import { FsBlobStore } from '../../../src/storage/fs-blob-store.js';
import { fileTempDir, withTestApp, type TestApp } from '../../helper.js';
import { jpeg } from '../../support/images.js';
import { createDataset, upload } from '../../support/images-api.js';
import { filesBody } from '../../support/multipart.js';

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
let seed = 7000;
const nextSeed = (): number => ++seed;

interface UploadedImage { id: string, sha256: string, width: number, height: number }

async function uploadOne(ctx: TestApp, bytes: Buffer, datasetId?: string): Promise<UploadedImage> {
  const response = await upload(ctx, datasetId ?? await createDataset(ctx), filesBody([{ name: 'photo.jpg', data: bytes }]));
  assert.equal(response.statusCode, 201, response.body);
  return response.json().data[0] as UploadedImage;
}

function thumbnailOf(ctx: TestApp, id: string, headers: Record<string, string> = {}) {
  return ctx.app.inject({ method: 'GET', url: `/v1/images/${id}/content?variant=thumbnail`, headers: { ...ctx.auth, ...headers } });
}

/** Every file under DATA_DIR/thumbnails, relative to it. */
async function thumbnailFiles(dataDir: string): Promise<string[]> {
  const root = join(dataDir, 'thumbnails');
  try {
    const entries = await readdir(root, { recursive: true, withFileTypes: true });
    return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(root.length + 1)).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

const cacheOf = (ctx: TestApp): ThumbnailCache => new ThumbnailCache(join(ctx.config.dataDir, 'thumbnails'));

test('a 640x480 JPEG: a 256x192 WebP with its own ETag, 304 on If-None-Match, original unchanged', async (t) => {
  const ctx = await withTestApp(t);
  const bytes = await jpeg({ width: 640, height: 480, seed: nextSeed() });
  const image = await uploadOne(ctx, bytes);

  const response = await thumbnailOf(ctx, image.id);
  assert.equal(response.statusCode, 200, response.body);
  assert.equal(response.headers['content-type'], 'image/webp');
  assert.equal(response.headers.etag, `"${sha256(bytes)}-thumbnail-256"`);
  assert.equal(response.headers['cache-control'], 'private, max-age=31536000, immutable');
  assert.equal(response.headers['x-content-type-options'], 'nosniff');
  assert.equal(Number(response.headers['content-length']), response.rawPayload.length);
  const meta = await sharp(response.rawPayload).metadata();
  assert.equal(meta.format, 'webp');
  assert.deepEqual([meta.width, meta.height], [256, 192]);

  const cached = await thumbnailOf(ctx, image.id, { 'if-none-match': `"${sha256(bytes)}-thumbnail-256"` });
  assert.equal(cached.statusCode, 304);
  assert.equal(cached.rawPayload.length, 0);
  assert.equal(cached.headers.etag, `"${sha256(bytes)}-thumbnail-256"`);
  // The original's tag is another representation's: the thumbnail is sent.
  const otherTag = await thumbnailOf(ctx, image.id, { 'if-none-match': `"${sha256(bytes)}"` });
  assert.equal(otherTag.statusCode, 200);
  assert.deepEqual(otherTag.rawPayload, response.rawPayload);

  for (const url of [`/v1/images/${image.id}/content`, `/v1/images/${image.id}/content?variant=original`]) {
    const original = await ctx.app.inject({ method: 'GET', url, headers: ctx.auth });
    assert.equal(original.statusCode, 200, url);
    assert.equal(original.headers['content-type'], 'image/jpeg');
    assert.equal(original.headers.etag, `"${sha256(bytes)}"`);
    assert.deepEqual(original.rawPayload, bytes);
    // And the thumbnail's tag is not the original's.
    const notModified = await ctx.app.inject({ method: 'GET', url, headers: { ...ctx.auth, 'if-none-match': `"${sha256(bytes)}-thumbnail-256"` } });
    assert.equal(notModified.statusCode, 200, url);
  }
});

test('EXIF orientation 6 is applied: a 640x480 JPEG shown as 480x640 gives a 192x256 thumbnail', async (t) => {
  const ctx = await withTestApp(t);
  const image = await uploadOne(ctx, await jpeg({ width: 640, height: 480, orientation: 6, seed: nextSeed() }));
  assert.deepEqual([image.width, image.height], [480, 640]);
  const response = await thumbnailOf(ctx, image.id);
  assert.equal(response.statusCode, 200, response.body);
  const meta = await sharp(response.rawPayload).metadata();
  assert.equal(meta.format, 'webp');
  assert.deepEqual([meta.width, meta.height], [192, 256]);
  assert.ok((meta.orientation ?? 1) === 1, 'the pixels are rotated, not tagged');
});

test('a small image is not enlarged', async (t) => {
  const ctx = await withTestApp(t, { env: { IMAGE_MIN_SIDE: '64' } });
  const image = await uploadOne(ctx, await jpeg({ width: 100, height: 80, seed: nextSeed() }));
  const response = await thumbnailOf(ctx, image.id);
  assert.equal(response.statusCode, 200, response.body);
  const meta = await sharp(response.rawPayload).metadata();
  assert.equal(meta.format, 'webp');
  assert.deepEqual([meta.width, meta.height], [100, 80]);
});

test('the thumbnail is made once, cached in DATA_DIR/thumbnails, and made again when the file is gone', async (t) => {
  const ctx = await withTestApp(t);
  const bytes = await jpeg({ width: 640, height: 480, seed: nextSeed() });
  const image = await uploadOne(ctx, bytes);
  const cache = cacheOf(ctx);
  const file = cache.pathOf(sha256(bytes));
  const hash = sha256(bytes);
  assert.equal(file, join(ctx.config.dataDir, 'thumbnails', hash.slice(0, 2), hash.slice(2, 4), `${hash}-256.webp`));
  assert.equal(await stat(file).catch(() => null), null);

  const first = await thumbnailOf(ctx, image.id);
  assert.equal(first.statusCode, 200);
  const written = await stat(file);
  assert.ok(written.isFile());
  assert.equal(written.size, first.rawPayload.length);
  assert.ok(!(await thumbnailFiles(ctx.config.dataDir)).some((name) => name.includes('.tmp-')), 'no temp file is left');

  // Served from the file: its mtime stays, and the blob is not needed any more.
  const blobs = new FsBlobStore(join(ctx.config.dataDir, 'blobs'));
  const blobBytes = await blobs.get(hash);
  assert.ok(blobBytes !== null);
  await unlink(blobs.pathOf(hash));
  const second = await thumbnailOf(ctx, image.id);
  assert.equal(second.statusCode, 200);
  assert.deepEqual(second.rawPayload, first.rawPayload);
  assert.equal((await stat(file)).mtimeMs, written.mtimeMs);

  // A missing cache file is made again from the blob.
  await blobs.put(blobBytes);
  await unlink(file);
  const third = await thumbnailOf(ctx, image.id);
  assert.equal(third.statusCode, 200);
  assert.deepEqual(third.rawPayload, first.rawPayload);
  assert.ok((await stat(file)).isFile());
});

test('concurrent requests for one image share one generation', async () => {
  const cache = new ThumbnailCache(join(fileTempDir(), 'thumbnails-concurrency'));
  const bytes = await jpeg({ width: 640, height: 480, seed: nextSeed() });
  let sourceCalls = 0;
  const source = async (): Promise<Buffer> => {
    sourceCalls++;
    await new Promise((resolve) => setTimeout(resolve, 20));
    return bytes;
  };
  const results = await Promise.all(Array.from({ length: 8 }, () => cache.get(sha256(bytes), source)));
  assert.equal(sourceCalls, 1);
  for (const result of results) assert.deepEqual(result, results[0]);
  assert.deepEqual(await cache.get(sha256(bytes), async () => assert.fail('the cache file is used')), results[0]);
  assert.equal(await cache.get(sha256(Buffer.from('no such image')), async () => null), null);
  await assert.rejects(cache.get('../../etc/passwd', source), TypeError);
  assert.equal(await cache.delete(sha256(bytes)), true);
  assert.equal(await cache.delete(sha256(bytes)), false);
});

test('an unknown variant is a 400 problem naming `variant`', async (t) => {
  const ctx = await withTestApp(t);
  const image = await uploadOne(ctx, await jpeg({ width: 300, height: 300, seed: nextSeed() }));
  for (const query of ['variant=huge', 'variant=', 'size=64']) {
    const response = await ctx.app.inject({ method: 'GET', url: `/v1/images/${image.id}/content?${query}`, headers: ctx.auth });
    assert.equal(response.statusCode, 400, query);
    assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
    const problem = response.json();
    const field = query.startsWith('size') ? 'size' : 'variant';
    assert.ok(
      (problem.errors ?? []).some((e: { in: string, field: string }) => e.field === field),
      `${query}: errors name ${field}: ${JSON.stringify(problem.errors)}`,
    );
  }
});

test("another tenant's image is a 404, thumbnail or not", async (t) => {
  const ctx = await withTestApp(t);
  const image = await uploadOne(ctx, await jpeg({ width: 300, height: 300, seed: nextSeed() }));
  const other = { authorization: `Bearer ${await ctx.createTenantKey()}` };
  const response = await ctx.app.inject({ method: 'GET', url: `/v1/images/${image.id}/content?variant=thumbnail`, headers: other });
  assert.equal(response.statusCode, 404);
  assert.equal(response.json().type, 'tag:sdxl-lora-service,2026:problem:not-found');
  assert.deepEqual(await thumbnailFiles(ctx.config.dataDir).then((files) => files.filter((f) => f.includes(image.sha256))), []);
});

test('deleting the image releases its blob and its thumbnail; a shared blob keeps both', async (t) => {
  const ctx = await withTestApp(t);
  const bytes = await jpeg({ width: 640, height: 480, seed: nextSeed() });
  const image = await uploadOne(ctx, bytes);
  const copy = await uploadOne(ctx, bytes); // the same bytes in another dataset: one blob
  assert.equal((await thumbnailOf(ctx, image.id)).statusCode, 200);
  const file = cacheOf(ctx).pathOf(sha256(bytes));
  assert.ok((await stat(file)).isFile());

  assert.equal((await ctx.app.inject({ method: 'DELETE', url: `/v1/images/${image.id}`, headers: ctx.auth })).statusCode, 204);
  assert.ok((await stat(file)).isFile(), 'the other image still references the blob');

  assert.equal((await ctx.app.inject({ method: 'DELETE', url: `/v1/images/${copy.id}`, headers: ctx.auth })).statusCode, 204);
  assert.equal(await new FsBlobStore(join(ctx.config.dataDir, 'blobs')).exists(sha256(bytes)), false);
  assert.equal(await stat(file).catch(() => null), null, 'the thumbnail went with the blob');
});

test('deleting a dataset removes the thumbnails of its released blobs', async (t) => {
  const ctx = await withTestApp(t);
  const datasetId = await createDataset(ctx);
  const bytes = await jpeg({ width: 640, height: 480, seed: nextSeed() });
  const image = await uploadOne(ctx, bytes, datasetId);
  assert.equal((await thumbnailOf(ctx, image.id)).statusCode, 200);
  const file = cacheOf(ctx).pathOf(sha256(bytes));
  assert.ok((await stat(file)).isFile());
  assert.equal((await ctx.app.inject({ method: 'DELETE', url: `/v1/datasets/${datasetId}`, headers: ctx.auth })).statusCode, 204);
  assert.equal(await stat(file).catch(() => null), null);
});
