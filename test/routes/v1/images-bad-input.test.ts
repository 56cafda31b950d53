// Bad input to the images routes: each case answers the right status with an RFC 9457
// body (type, title, status, detail, and the field and file at fault) and leaves what was
// stored before unchanged: the image rows, the datasets' counts and the blob files.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DATABASE_MODES, withTestApp } from '../../helper.js';
import { gif, jpeg, png, pngHeaderClaiming, svg, tiff, webp } from '../../support/images.js';
import { storedState } from '../../support/image-store-state.js';
import { createDataset, upload } from '../../support/images-api.js';
import { filesBody, multipart, type MultipartBody } from '../../support/multipart.js';
import { buildZip } from '../../support/zip.js';

const MiB = 1024 * 1024;
/** Limits small enough that every case can exceed one cheaply. */
const ENV = {
  UPLOAD_MAX_FILE_BYTES: String(2 * MiB),
  UPLOAD_MAX_FILES: '4',
  DATASET_MAX_IMAGES: '3',
  IMAGE_MIN_SIDE: '256',
  ZIP_MAX_ENTRIES: '20',
  ZIP_MAX_UNCOMPRESSED_BYTES: String(8 * MiB),
  ZIP_MAX_COMPRESSION_RATIO: '100',
};
const PROBLEM = 'tag:sdxl-lora-service,2026:problem:';

let seed = 5000;
const photo = (width = 300, height = 300) => jpeg({ width, height, seed: ++seed });

/** Bytes that deflate about 8:1: under the ratio limit, yet small enough to send many MiB of inflated data. */
function twoSymbolNoise(length: number, seedValue: number): Buffer {
  const bytes = Buffer.alloc(length);
  let state = seedValue;
  for (let i = 0; i < length; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    bytes[i] = (state >>> 16) & 1;
  }
  return bytes;
}

interface BadCase {
  name: string;
  /** The dataset posted to: the one made beforehand, an id nobody has, or another tenant's. */
  target?: 'existing' | 'unknown' | 'other-tenant';
  body: () => Promise<MultipartBody | { payload: string, headers: Record<string, string> }>;
  /** Send without Authorization. */
  anonymous?: boolean;
  status: number;
  type: string;
  /** The field errors[] must name. */
  field?: string;
  /** Text the problem must contain (the offending file's name). */
  mentions?: string;
}

const cases: BadCase[] = [
  { name: 'non-image bytes sent as image/jpeg', body: async () => filesBody([{ name: 'notes.jpg', data: 'this is plain text, not a JPEG' }]), status: 415, type: 'unsupported-media-type', field: 'files', mentions: 'notes.jpg' },
  { name: 'truncated JPEG', body: async () => filesBody([{ name: 'cut.jpg', data: (await photo(512, 512)).subarray(0, 20_000) }]), status: 422, type: 'corrupt-image', field: 'files', mentions: 'cut.jpg' },
  { name: 'PNG with a corrupted pixel stream', body: async () => { const b = Buffer.from(await png({ width: 300, height: 300, seed: ++seed })); b.fill(0x55, 200, 600); return filesBody([{ name: 'bad.png', data: b, contentType: 'image/png' }]); }, status: 422, type: 'corrupt-image', field: 'files', mentions: 'bad.png' },
  { name: '0-byte file', body: async () => filesBody([{ name: 'empty.jpg', data: Buffer.alloc(0) }]), status: 400, type: 'empty-file', field: 'files', mentions: 'empty.jpg' },
  { name: 'PNG header claiming 20000x20000 (refused before decoding)', body: async () => filesBody([{ name: 'bomb.png', data: pngHeaderClaiming(20000, 20000), contentType: 'image/png' }]), status: 422, type: 'image-too-many-pixels', field: 'files', mentions: '20000x20000' },
  { name: 'GIF', body: async () => filesBody([{ name: 'anim.gif', data: await gif({ width: 300, height: 300 }), contentType: 'image/gif' }]), status: 415, type: 'unsupported-media-type', field: 'files', mentions: 'GIF' },
  { name: 'TIFF named .jpg', body: async () => filesBody([{ name: 'scan.jpg', data: await tiff({ width: 300, height: 300 }) }]), status: 415, type: 'unsupported-media-type', field: 'files', mentions: 'TIFF' },
  { name: 'SVG', body: async () => filesBody([{ name: 'logo.svg', data: svg({ width: 300, height: 300 }), contentType: 'image/svg+xml' }]), status: 415, type: 'unsupported-media-type', field: 'files', mentions: 'SVG' },
  { name: 'image smaller than the minimum side', body: async () => filesBody([{ name: 'thumb.webp', data: await webp({ width: 400, height: 128 }), contentType: 'image/webp' }]), status: 422, type: 'image-too-small', field: 'files', mentions: '400x128' },
  { name: 'file over the byte limit', body: async () => filesBody([{ name: 'huge.jpg', data: Buffer.concat([await photo(), Buffer.alloc(2 * MiB)]) }]), status: 413, type: 'file-too-large', field: 'files', mentions: 'huge.jpg' },
  { name: 'one bad file among good ones stores nothing', body: async () => filesBody([{ name: 'good1.jpg', data: await photo() }, { name: 'broken.jpg', data: 'GIF89a nope' }, { name: 'good2.jpg', data: await photo() }]), status: 415, type: 'unsupported-media-type', field: 'files', mentions: 'broken.jpg' },
  { name: 'too many files in one request', body: async () => filesBody(await Promise.all(Array.from({ length: 5 }, async (_, i) => ({ name: `p${i}.jpg`, data: await photo() })))), status: 413, type: 'too-many-files', field: 'files' },
  { name: 'more images than the dataset may still hold', body: async () => filesBody([{ name: 'a.jpg', data: await photo() }, { name: 'b.jpg', data: await photo() }, { name: 'c.jpg', data: await photo() }]), status: 409, type: 'dataset-image-limit', field: 'files' },
  { name: 'zip bomb: a huge, highly compressible entry', body: async () => filesBody([{ name: 'bomb.zip', data: buildZip([{ name: 'zeros.jpg', data: Buffer.alloc(64 * MiB) }]), contentType: 'application/zip' }]), status: 413, type: 'file-too-large', field: 'files', mentions: 'bomb.zip' },
  { name: 'zip bomb whose header lies about the size', body: async () => filesBody([{ name: 'liar.zip', data: buildZip([{ name: 'zeros.jpg', data: Buffer.alloc(64 * MiB), claimedUncompressedSize: 4096 }]), contentType: 'application/zip' }]), status: 400, type: 'archive-invalid', field: 'files', mentions: 'liar.zip' },
  { name: 'zip entry past the compression ratio', body: async () => filesBody([{ name: 'flat.zip', data: buildZip([{ name: 'flat.jpg', data: Buffer.alloc(MiB + MiB / 2) }]), contentType: 'application/zip' }]), status: 413, type: 'archive-too-large', field: 'files', mentions: 'flat.zip' },
  { name: 'zip inflating past the total limit', body: async () => filesBody([{ name: 'many.zip', data: buildZip(Array.from({ length: 5 }, (_, i) => ({ name: `n${i}.jpg`, data: twoSymbolNoise(1.8 * MiB, i + 1) }))) }]), status: 413, type: 'archive-too-large', field: 'files', mentions: 'many.zip' },
  { name: 'zip with "../" names', body: async () => filesBody([{ name: 'slip.zip', data: buildZip([{ name: '../../evil.jpg', data: await photo() }]) }]), status: 400, type: 'archive-unsafe-path', field: 'files', mentions: '../../evil.jpg' },
  { name: 'zip with an absolute path', body: async () => filesBody([{ name: 'abs.zip', data: buildZip([{ name: '/etc/cron.d/evil.jpg', data: await photo() }]) }]), status: 400, type: 'archive-unsafe-path', field: 'files', mentions: '/etc/cron.d/evil.jpg' },
  { name: 'zip with a backslash path', body: async () => filesBody([{ name: 'win.zip', data: buildZip([{ name: '..\\..\\evil.jpg', data: await photo() }]) }]), status: 400, type: 'archive-unsafe-path', field: 'files', mentions: 'win.zip' },
  { name: 'zip with a symbolic link', body: async () => filesBody([{ name: 'link.zip', data: buildZip([{ name: 'photo.jpg', data: '/etc/passwd', unixMode: 0o120777 }]) }]), status: 400, type: 'archive-unsafe-path', field: 'files', mentions: 'photo.jpg' },
  { name: 'nested zip', body: async () => filesBody([{ name: 'outer.zip', data: buildZip([{ name: 'ok.jpg', data: await photo() }, { name: 'inner.zip', data: buildZip([{ name: 'x.jpg', data: await photo() }]) }]) }]), status: 400, type: 'archive-nested', field: 'files', mentions: 'Entry "inner.zip" of "outer.zip"' },
  { name: 'zip with too many entries', body: async () => filesBody([{ name: 'crowd.zip', data: buildZip(Array.from({ length: 21 }, (_, i) => ({ name: `c${i}.txt`, data: 'caption' }))) }]), status: 413, type: 'archive-too-many-entries', field: 'files', mentions: 'crowd.zip' },
  { name: 'zip holding no image', body: async () => filesBody([{ name: 'captions.zip', data: buildZip([{ name: 'a.txt', data: 'just a caption' }, { name: '__MACOSX/._a.jpg', data: 'x' }]) }]), status: 400, type: 'archive-empty', field: 'files', mentions: 'captions.zip' },
  { name: 'corrupt zip', body: async () => filesBody([{ name: 'broken.zip', data: Buffer.concat([Buffer.from('PK\x03\x04'), Buffer.alloc(200, 7)]) }]), status: 400, type: 'archive-invalid', field: 'files', mentions: 'broken.zip' },
  { name: 'zip with a bad image inside', body: async () => filesBody([{ name: 'set.zip', data: buildZip([{ name: 'ok.jpg', data: await photo() }, { name: 'cut.jpg', data: (await photo(512, 512)).subarray(0, 15_000) }]) }]), status: 422, type: 'corrupt-image', field: 'files', mentions: 'set.zip/cut.jpg' },
  { name: 'caption that is not UTF-8', body: async () => filesBody([{ name: 'cap.zip', data: buildZip([{ name: 'a.jpg', data: await photo() }, { name: 'a.txt', data: Buffer.from([0xc3, 0x28, 0xa0, 0xa1]) }]) }]), status: 400, type: 'caption-invalid', field: 'files', mentions: 'cap.zip/a.txt' },
  { name: 'wrong multipart field name', body: async () => filesBody([{ name: 'a.jpg', data: await photo() }], 'image'), status: 400, type: 'unknown-field', field: 'image', mentions: '"image"' },
  { name: 'a text field besides the files', body: async () => multipart([{ field: 'caption', data: 'hello' }, { field: 'files', filename: 'a.jpg', contentType: 'image/jpeg', data: await photo() }]), status: 400, type: 'unknown-field', field: 'caption' },
  { name: '"files" sent as a text field', body: async () => multipart([{ field: 'files', data: 'not a file' }]), status: 400, type: 'unknown-field', field: 'files' },
  { name: 'multipart body without any part', body: async () => multipart([]), status: 400, type: 'no-files', field: 'files' },
  { name: 'JSON body instead of multipart', body: async () => ({ payload: JSON.stringify({ files: ['a.jpg'] }), headers: { 'content-type': 'application/json' } }), status: 415, type: 'not-multipart', field: 'content-type' },
  { name: 'text/plain body', body: async () => ({ payload: 'a.jpg', headers: { 'content-type': 'text/plain' } }), status: 415, type: 'unsupported-media-type' },
  { name: 'unknown dataset id', target: 'unknown', body: async () => filesBody([{ name: 'a.jpg', data: await photo() }]), status: 404, type: 'not-found' },
  { name: "another tenant's dataset id", target: 'other-tenant', body: async () => filesBody([{ name: 'a.jpg', data: await photo() }]), status: 404, type: 'not-found' },
  { name: 'no API key', anonymous: true, body: async () => filesBody([{ name: 'a.jpg', data: await photo() }]), status: 401, type: 'unauthorized' },
];

for (const mode of DATABASE_MODES) {
  describe(`bad image input on ${mode.name}`, () => {
    test(`${cases.length} bad uploads each answer a problem and store nothing`, async (t) => {
      const ctx = await withTestApp(t, { embedded: mode.embedded, env: ENV });
      const existing = await createDataset(ctx);
      const first = await upload(ctx, existing, filesBody([{ name: 'first.jpg', data: await photo() }]));
      assert.equal(first.statusCode, 201, first.body);
      const otherKey = await ctx.createTenantKey();
      const others = await createDataset(ctx, otherKey);
      const before = await storedState(ctx.db, ctx.config.dataDir, ctx.tenantId);
      const otherTenant = (await ctx.db.query<{ tenant_id: string }>('SELECT tenant_id FROM datasets WHERE id = $1', [others])).rows[0]!.tenant_id;
      const othersBefore = await storedState(ctx.db, ctx.config.dataDir, otherTenant);
      assert.equal(before.rows.length, 1);

      for (const c of cases) {
        await t.test(c.name, async () => {
          const datasetId = c.target === 'unknown' ? 'ds_01JD3Q5V8Z6ZK2W7M4N1T0X9PA' : c.target === 'other-tenant' ? others : existing;
          const body = await c.body();
          const url = `/v1/datasets/${datasetId}/images`;
          const response = await ctx.app.inject({
            method: 'POST',
            url,
            headers: { ...(c.anonymous ? {} : ctx.auth), ...body.headers },
            payload: body.payload,
          });
          assert.equal(response.statusCode, c.status, response.body);
          assert.match(String(response.headers['content-type']), /^application\/problem\+json/);
          const problem = response.json();
          assert.equal(problem.type, PROBLEM + c.type);
          assert.equal(problem.status, c.status);
          assert.equal(typeof problem.title, 'string');
          assert.ok(problem.title.length > 0);
          assert.equal(typeof problem.detail, 'string');
          assert.equal(problem.instance, url);
          if (c.field !== undefined) {
            const named = problem.errors?.find((e: { field: string }) => e.field === c.field);
            assert.ok(named, `errors name ${c.field}: ${JSON.stringify(problem.errors)}`);
            assert.equal(named.pointer, `/${c.field}`);
          }
          if (c.mentions !== undefined) {
            const texts = [problem.detail, ...(problem.errors ?? []).map((e: { message: string }) => e.message)];
            assert.ok(texts.some((text) => text.includes(c.mentions!)), `the problem mentions ${c.mentions}: ${JSON.stringify(texts)}`);
          }
          assert.deepEqual(await storedState(ctx.db, ctx.config.dataDir, ctx.tenantId), before, 'rows, counts and blob files unchanged');
        });
      }
      assert.deepEqual(await storedState(ctx.db, ctx.config.dataDir, otherTenant), othersBefore, "the other tenant's dataset is untouched");
    });
  });
}
