// /v1/datasets/{id}/imports and /v1/dataset-imports/{id}: archives of thousands of images
// imported in one request (tar.gz, tar, zip; sidecar and metadata.jsonl captions), refusals
// by entry name, limits, events, cancel, and an import resumed by another app instance.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, test, type TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { DATABASE_MODES, withTestApp, type TestApp } from '../../helper.js';
import { png } from '../../support/images.js';
import { createDataset, imageCount } from '../../support/images-api.js';
import { multipart } from '../../support/multipart.js';
import { startReceiver, verified } from '../../support/webhook-receiver.js';
import { buildTar, type TarSpec } from '../../support/tar.js';
import { buildZip } from '../../support/zip.js';

/** Small images: 16x16 noise PNGs (about 850 bytes) are accepted once IMAGE_MIN_SIDE allows them. */
const SMALL_IMAGES = { IMAGE_MIN_SIDE: '16', UPLOAD_MAX_FILE_BYTES: String(64 * 1024) };
/** The bound on the process's RSS growth while the 2,000-image archive is imported. */
const RSS_BOUND_BYTES = 200 * 1024 * 1024;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * A DATA_DIR for the tests that store thousands of blobs: on tmpfs where there is one, since
 * removing thousands of small files from a busy CI disk takes longer than the import itself.
 */
async function bulkDataDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'sdxl-imports-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

let seed = 5000;
const tiny = (): Promise<Buffer> => png({ width: 16, height: 16, seed: ++seed });

interface Import {
  id: string;
  status: string;
  format: string;
  bytes: number;
  sha256: string;
  filename: string | null;
  progress: { bytes_read: number; entries_read: number; images_stored: number; duplicates: number; captions_attached: number; refused: number };
  refusals: Array<{ entry: string; code: string; detail: string }>;
  refusals_truncated: boolean;
  caption_conflicts: number;
  error: { code: string; message: string } | null;
  completed_at: string | null;
}

function postImport(ctx: TestApp, datasetId: string, body: Buffer, contentType: string, filename?: string) {
  return ctx.app.inject({
    method: 'POST',
    url: `/v1/datasets/${datasetId}/imports${filename === undefined ? '' : `?filename=${encodeURIComponent(filename)}`}`,
    headers: { ...ctx.auth, 'content-type': contentType },
    payload: body,
  });
}

async function getImport(ctx: TestApp, id: string): Promise<Import> {
  const response = await ctx.app.inject({ method: 'GET', url: `/v1/dataset-imports/${id}`, headers: ctx.auth });
  assert.equal(response.statusCode, 200, response.body);
  return response.json();
}

async function waitFor(ctx: TestApp, id: string, done: (current: Import) => boolean, timeoutMs = 50_000): Promise<Import> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const current = await getImport(ctx, id);
    if (done(current)) return current;
    if (Date.now() > deadline) throw new Error(`import ${id} is still ${current.status}: ${JSON.stringify(current.progress)}`);
    await sleep(50);
  }
}
const ended = (current: Import): boolean => current.completed_at !== null;

async function captionsByName(ctx: TestApp, datasetId: string): Promise<Map<string, string | null>> {
  const { rows } = await ctx.db.query<{ original_filename: string; caption: string | null }>(
    'SELECT original_filename, caption FROM images WHERE dataset_id = $1', [datasetId],
  );
  return new Map(rows.map((r) => [r.original_filename, r.caption]));
}

async function storedArchives(ctx: TestApp): Promise<string[]> {
  return readdir(join(ctx.config.dataDir, 'imports')).catch(() => []);
}

/** `count` good images photos/img0000.png... with a caption sidecar each, half before and half after their image. */
async function photoEntries(count: number): Promise<{ entries: TarSpec[]; images: Buffer[] }> {
  const entries: TarSpec[] = [];
  const images: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const name = `photos/img${String(i).padStart(4, '0')}`;
    const image = await tiny();
    images.push(image);
    const sidecar: TarSpec = { name: `${name}${i % 3 === 0 ? '.caption' : '.txt'}`, data: `a photo of sks dog, number ${i}\n` };
    const file: TarSpec = { name: `${name}.png`, data: image };
    entries.push(...(i % 2 === 0 ? [sidecar, file] : [file, sidecar]));
  }
  return { entries, images };
}

describe('dataset imports', () => {
  test('a 2,000-image tar.gz with sidecars: every image stored once, captions attached, refusals by name, RSS bounded', { timeout: 60_000 }, async (t) => {
    const ctx = await withTestApp(t, { env: { ...SMALL_IMAGES, DATA_DIR: await bulkDataDir(t) } });
    const datasetId = await createDataset(ctx);
    const { entries, images } = await photoEntries(2000);
    const longName = `photos/${'deep/'.repeat(30)}long-pax.png`;
    const gnuName = `photos/${'nested/'.repeat(20)}long-gnu.png`;
    const truncated = await tiny();
    entries.push(
      { name: 'photos/', data: '', type: '5' },
      { name: longName, data: await tiny() },
      { name: gnuName, data: await tiny(), longName: 'gnu' },
      { name: 'photos/truncated.png', data: truncated.subarray(0, truncated.length / 2) },
      { name: 'photos/notes.pdf', data: '%PDF-1.4 not an image' },
      { name: 'photos/huge.png', data: await png({ width: 200, height: 200, seed: ++seed }) },
      { name: 'photos/copy-of-img0000.png', data: images[0]! },
      { name: 'photos/.DS_Store', data: 'junk' },
    );
    const archive = gzipSync(buildTar(entries));

    const startedAt = Date.now();
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 20);
    t.after(() => clearInterval(sampler));
    const created = await postImport(ctx, datasetId, archive, 'application/gzip', 'photos.tar.gz');
    assert.equal(created.statusCode, 202, created.body);
    const queued: Import = created.json();
    assert.equal(created.headers.location, `/v1/dataset-imports/${queued.id}`);
    assert.match(queued.id, /^imp_/);
    assert.equal(queued.format, 'tar.gz');
    assert.equal(queued.filename, 'photos.tar.gz');
    assert.equal(queued.bytes, archive.length);
    const done = await waitFor(ctx, queued.id, ended);
    clearInterval(sampler);
    t.diagnostic(`${entries.length} entries imported in ${Date.now() - startedAt} ms`);

    assert.equal(done.status, 'succeeded', JSON.stringify(done.error));
    assert.deepEqual(done.progress, {
      bytes_read: archive.length,
      entries_read: entries.length,
      images_stored: 2002,
      duplicates: 1,
      captions_attached: 2000,
      refused: 3,
    });
    assert.deepEqual(done.refusals.map((r) => [r.entry, r.code]), [
      ['photos/truncated.png', 'corrupt-image'],
      ['photos/notes.pdf', 'unsupported-media-type'],
      ['photos/huge.png', 'file-too-large'],
    ]);
    assert.equal(done.refusals_truncated, false);
    assert.equal(done.caption_conflicts, 0);
    assert.equal(await imageCount(ctx, datasetId), 2002);
    const captions = await captionsByName(ctx, datasetId);
    assert.equal(captions.get('photos/img0000.png'), 'a photo of sks dog, number 0', 'a sidecar before its image');
    assert.equal(captions.get('photos/img0001.png'), 'a photo of sks dog, number 1', 'a sidecar after its image');
    assert.equal(captions.get(longName), null, 'a pax path');
    assert.ok(captions.has(gnuName), 'a GNU long name');
    const { rows } = await ctx.db.query<{ n: number }>('SELECT count(DISTINCT sha256)::int AS n FROM images WHERE dataset_id = $1', [datasetId]);
    assert.equal(rows[0]!.n, 2002, 'each image stored once');
    assert.deepEqual(await storedArchives(ctx), [], 'the archive is deleted once the import ends');
    const growth = peak - baseline;
    t.diagnostic(`RSS grew by ${(growth / 1024 / 1024).toFixed(1)} MiB during the import (bound ${RSS_BOUND_BYTES / 1024 / 1024} MiB)`);
    assert.ok(growth < RSS_BOUND_BYTES, `RSS grew by ${growth} bytes`);
  });

  for (const mode of DATABASE_MODES) test(`a zip (multipart) and a plain tar with metadata.jsonl on ${mode.name}: the sidecar wins a conflict, bad lines are refused by line`, async (t) => {
    const ctx = await withTestApp(t, { embedded: mode.embedded, env: SMALL_IMAGES });
    const datasetId = await createDataset(ctx);
    const [a, b, c] = [await tiny(), await tiny(), await tiny()];
    const metadata = [
      JSON.stringify({ file_name: 'a.png', text: 'metadata caption of a' }),
      JSON.stringify({ file_name: 'b.png', text: 'metadata caption of b' }),
      'not json',
      JSON.stringify({ file_name: 'c.png' }),
    ].join('\n');
    const zip = buildZip([
      { name: 'set/metadata.jsonl', data: metadata },
      { name: 'set/a.png', data: a },
      { name: 'set/b.png', data: b },
      { name: 'set/b.txt', data: 'sidecar caption of b' },
      { name: 'set/c.png', data: c },
    ]);
    const body = multipart([{ field: 'file', filename: 'set.zip', contentType: 'application/zip', data: zip }]);
    const created = await ctx.app.inject({ method: 'POST', url: `/v1/datasets/${datasetId}/imports`, headers: { ...ctx.auth, ...body.headers }, payload: body.payload });
    assert.equal(created.statusCode, 202, created.body);
    assert.equal(created.json().format, 'zip');
    assert.equal(created.json().filename, 'set.zip');
    const zipped = await waitFor(ctx, created.json().id, ended);
    assert.equal(zipped.status, 'succeeded');
    assert.deepEqual([zipped.progress.images_stored, zipped.progress.captions_attached, zipped.progress.refused, zipped.caption_conflicts], [3, 2, 2, 1]);
    assert.deepEqual(zipped.refusals.map((r) => [r.entry, r.code]), [['set/metadata.jsonl:3', 'metadata-invalid'], ['set/metadata.jsonl:4', 'metadata-invalid']]);
    let captions = await captionsByName(ctx, datasetId);
    assert.equal(captions.get('set/a.png'), 'metadata caption of a');
    assert.equal(captions.get('set/b.png'), 'sidecar caption of b', 'the sidecar wins');
    assert.equal(captions.get('set/c.png'), null);

    // A tar whose metadata.jsonl comes last and names files of its folder; one image the dataset holds already.
    const d = await tiny();
    const tar = buildTar([
      { name: 'more/d.png', data: d },
      { name: 'more/a-again.png', data: a },
      { name: 'more/metadata.jsonl', data: `${JSON.stringify({ file_name: 'd.png', text: 'metadata caption of d' })}\n` },
    ]);
    const plain = await postImport(ctx, datasetId, tar, 'application/x-tar');
    assert.equal(plain.statusCode, 202, plain.body);
    assert.equal(plain.json().format, 'tar');
    assert.equal(plain.json().filename, null);
    const tarred = await waitFor(ctx, plain.json().id, ended);
    assert.deepEqual([tarred.status, tarred.progress.images_stored, tarred.progress.duplicates, tarred.progress.captions_attached], ['succeeded', 1, 1, 1]);
    captions = await captionsByName(ctx, datasetId);
    assert.equal(captions.get('more/d.png'), 'metadata caption of d');

    const list = await ctx.app.inject({ method: 'GET', url: `/v1/datasets/${datasetId}/imports?limit=1`, headers: ctx.auth });
    assert.equal(list.statusCode, 200);
    assert.deepEqual(list.json().data.map((i: Import) => i.id), [tarred.id], 'newest first');
    const next = await ctx.app.inject({ method: 'GET', url: `/v1/datasets/${datasetId}/imports?cursor=${list.json().next_cursor}`, headers: ctx.auth });
    assert.deepEqual(next.json().data.map((i: Import) => i.id), [zipped.id]);
  });

  test('refusals of the request: 413 over UPLOAD_MAX_REQUEST_BYTES and 415 for a non-archive keep nothing; 400 empty; 404 dataset', async (t) => {
    const ctx = await withTestApp(t, { env: { ...SMALL_IMAGES, UPLOAD_MAX_REQUEST_BYTES: '4096' } });
    const datasetId = await createDataset(ctx);
    const big = buildTar([{ name: 'a.png', data: await png({ width: 64, height: 64, seed: ++seed }) }]);
    assert.ok(big.length > 4096);
    const tooLarge = await postImport(ctx, datasetId, big, 'application/x-tar');
    assert.equal(tooLarge.statusCode, 413, tooLarge.body);
    assert.equal(tooLarge.headers['content-type'], 'application/problem+json; charset=utf-8');
    assert.match(tooLarge.json().type, /archive-too-large$/);
    // A body of no declared length (chunked) meets the limit while it is streamed to disk.
    const chunked = await ctx.app.inject({
      method: 'POST', url: `/v1/datasets/${datasetId}/imports`, headers: { ...ctx.auth, 'content-type': 'application/x-tar' }, payload: Readable.from([big]),
    });
    assert.equal(chunked.statusCode, 413, chunked.body);
    const body = multipart([{ field: 'file', filename: 'big.tar', contentType: 'application/x-tar', data: big }]);
    const parted = await ctx.app.inject({ method: 'POST', url: `/v1/datasets/${datasetId}/imports`, headers: { ...ctx.auth, ...body.headers }, payload: Readable.from([body.payload]) });
    assert.equal(parted.statusCode, 413, parted.body);

    const notArchive = await postImport(ctx, datasetId, await tiny(), 'application/octet-stream');
    assert.equal(notArchive.statusCode, 415, notArchive.body);
    assert.match(notArchive.json().detail, /PNG/);
    const json = await ctx.app.inject({ method: 'POST', url: `/v1/datasets/${datasetId}/imports`, headers: ctx.auth, payload: { archive: 'no' } });
    assert.equal(json.statusCode, 415, json.body);
    const empty = await postImport(ctx, datasetId, Buffer.alloc(0), 'application/zip');
    assert.equal(empty.statusCode, 400, empty.body);
    const unknown = await postImport(ctx, 'ds_01JD3Q5V8Z6ZK2W7M4N1T0X9PA', buildTar([]), 'application/x-tar');
    assert.equal(unknown.statusCode, 404, unknown.body);

    const list = await ctx.app.inject({ method: 'GET', url: `/v1/datasets/${datasetId}/imports`, headers: ctx.auth });
    assert.deepEqual(list.json().data, []);
    assert.deepEqual(await storedArchives(ctx), []);
  });

  test('DATASET_MAX_IMAGES: entries past it are refused by name; a damaged archive fails the import and keeps what was stored; webhooks tell both', async (t) => {
    const ctx = await withTestApp(t, { env: { ...SMALL_IMAGES, DATASET_MAX_IMAGES: '2', WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOWED_HOSTS: '127.0.0.1' } });
    const receiver = await startReceiver(t);
    const endpoint = await ctx.app.inject({
      method: 'POST', url: '/v1/webhook-endpoints', headers: ctx.auth,
      payload: { url: receiver.url, events: ['dataset_import.succeeded', 'dataset_import.failed'] },
    });
    assert.equal(endpoint.statusCode, 201, endpoint.body);
    const datasetId = await createDataset(ctx);
    const tar = buildTar([{ name: '1.png', data: await tiny() }, { name: '2.png', data: await tiny() }, { name: '3.png', data: await tiny() }]);
    const created = await postImport(ctx, datasetId, tar, 'application/x-tar');
    const done = await waitFor(ctx, created.json().id, ended);
    assert.equal(done.status, 'succeeded');
    assert.equal(done.progress.images_stored, 2);
    assert.deepEqual(done.refusals.map((r) => [r.entry, r.code]), [['3.png', 'dataset-image-limit']]);

    const other = await createDataset(ctx);
    const whole = gzipSync(buildTar([{ name: 'x.png', data: await tiny() }, { name: 'y.png', data: await png({ width: 16, height: 16, seed: ++seed }) }]));
    const cut = whole.subarray(0, whole.length - 30);
    const damaged = await postImport(ctx, other, cut, 'application/gzip');
    const failed = await waitFor(ctx, damaged.json().id, ended);
    assert.equal(failed.status, 'failed');
    assert.equal(failed.error?.code, 'archive-invalid');
    assert.deepEqual(await storedArchives(ctx), []);

    const webhooks = (await receiver.waitFor(2)).map((webhook) => verified(endpoint.json().secret, webhook));
    assert.deepEqual(webhooks.map((w) => [w.type, w.data.id, w.data.status]).sort(), [
      ['dataset_import.failed', failed.id, 'failed'],
      ['dataset_import.succeeded', done.id, 'succeeded'],
    ]);
    assert.deepEqual(webhooks.find((w) => w.data.id === done.id)!.data.refusals, done.refusals, 'the data is the import as GET shows it');
  });

  test('events: progress while it runs, then the final state, then the stream ends; cancel stops an import and keeps its images', { timeout: 60_000 }, async (t) => {
    const ctx = await withTestApp(t, { env: { ...SMALL_IMAGES, DATA_DIR: await bulkDataDir(t) } });
    const datasetId = await createDataset(ctx);
    const { entries } = await photoEntries(200);
    const created = await postImport(ctx, datasetId, gzipSync(buildTar(entries)), 'application/gzip');
    const id = created.json().id as string;
    const base = await ctx.app.listen({ port: 0, host: '127.0.0.1' });
    const response = await fetch(`${base}/v1/dataset-imports/${id}/events`, { headers: { ...ctx.auth, accept: 'text/event-stream' } });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type')!, /^text\/event-stream/);
    const text = await response.text(); // ends when the import has
    const events = [...text.matchAll(/event: (\w+)\ndata: (.*)\n\n/g)].map((m) => ({ type: m[1]!, data: JSON.parse(m[2]!) as Import }));
    assert.ok(events.length >= 2, text);
    assert.ok(events.slice(0, -1).every((e) => e.type === 'progress'));
    assert.equal(events.at(-1)!.type, 'succeeded');
    assert.equal(events.at(-1)!.data.progress.images_stored, 200);
    const json = await ctx.app.inject({ method: 'GET', url: `/v1/dataset-imports/${id}/events`, headers: ctx.auth });
    assert.equal(json.json().status, 'succeeded', 'without Accept: text/event-stream, the import as JSON');

    const second = await createDataset(ctx);
    const { entries: more } = await photoEntries(800);
    const started = await postImport(ctx, second, gzipSync(buildTar(more)), 'application/gzip');
    const running = await waitFor(ctx, started.json().id, (current) => current.progress.images_stored > 0);
    const cancel = await ctx.app.inject({ method: 'POST', url: `/v1/dataset-imports/${running.id}/cancel`, headers: ctx.auth });
    assert.equal(cancel.statusCode, 202, cancel.body);
    const canceled = await waitFor(ctx, running.id, ended);
    assert.equal(canceled.status, 'canceled');
    assert.ok(canceled.progress.images_stored < 800, 'stopped before the end');
    assert.equal(await imageCount(ctx, second), canceled.progress.images_stored, 'stored images stay');
    assert.deepEqual(await storedArchives(ctx), []);
    const again = await ctx.app.inject({ method: 'POST', url: `/v1/dataset-imports/${running.id}/cancel`, headers: ctx.auth });
    assert.equal(again.statusCode, 409);
  });

  test('at start-up, stored archives without an unfinished import are deleted once they are an hour old', async (t) => {
    const dataDir = await bulkDataDir(t);
    await mkdir(join(dataDir, 'imports'));
    const stale = join(dataDir, 'imports', 'imp_01JD3Q5V8Z6ZK2W7M4N1T0X9PA.archive');
    const recent = join(dataDir, 'imports', 'imp_01JD3Q5V8Z6ZK2W7M4N1T0X9PB.archive');
    await writeFile(stale, 'left by a process that died');
    await writeFile(recent, 'another replica is about to queue it');
    const hoursAgo = new Date(Date.now() - 2 * 3_600_000);
    await utimes(stale, hoursAgo, hoursAgo);
    const ctx = await withTestApp(t, { env: { DATA_DIR: dataDir } });
    const deadline = Date.now() + 10_000;
    while ((await storedArchives(ctx)).length > 1 && Date.now() < deadline) await sleep(50);
    assert.deepEqual(await storedArchives(ctx), ['imp_01JD3Q5V8Z6ZK2W7M4N1T0X9PB.archive']);
  });

  test('a worker that loses its import mid-way (its lease expired) leaves it to another instance, which finishes with each image stored once', { timeout: 60_000 }, async (t) => {
    const env = { ...SMALL_IMAGES, DATA_DIR: await bulkDataDir(t) };
    const first = await withTestApp(t, { env });
    const datasetId = await createDataset(first);
    const { entries } = await photoEntries(500);
    const created = await postImport(first, datasetId, gzipSync(buildTar(entries)), 'application/gzip');
    const id = created.json().id as string;
    const midway = await waitFor(first, id, (current) => current.progress.entries_read > 0);
    assert.equal(midway.status, 'running');
    // As if the first worker had died: its lease runs out, and the second instance claims the import.
    await first.db.query("UPDATE dataset_imports SET lease_owner = 'dead-worker', lease_expires_at = now() - interval '1 second' WHERE id = $1", [id]);
    const second = await withTestApp(t, { env });
    const done = await waitFor(first, id, ended);
    assert.equal(done.status, 'succeeded', JSON.stringify(done.error));
    assert.deepEqual([done.progress.images_stored, done.progress.duplicates, done.progress.refused, done.progress.captions_attached], [500, 0, 0, 500]);
    assert.equal(await imageCount(first, datasetId), 500);
    const { rows } = await first.db.query<{ claims: number }>('SELECT claims FROM dataset_imports WHERE id = $1', [id]);
    assert.equal(rows[0]!.claims, 2);
  });
});
