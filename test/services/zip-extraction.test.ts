import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { extractZip, isSkippedEntry, pathStem, type ZipLimits } from '../../src/services/zip-extraction.js';
import { jpeg } from '../support/images.js';
import { buildZip } from '../support/zip.js';
import { refusal } from '../support/refusal.js';

const MiB = 1024 * 1024;
const limits: ZipLimits = {
  maxEntries: 50,
  maxTotalBytes: 64 * MiB,
  maxEntryBytes: 16 * MiB,
  maxCaptionBytes: 4096,
  maxCompressionRatio: 100,
};

describe('zip entry names', () => {
  test('skips folders, __MACOSX, dotfiles and thumbnails', () => {
    for (const path of ['photos/', '__MACOSX/._a.jpg', '.DS_Store', 'sub/.hidden.jpg', 'Thumbs.db']) assert.equal(isSkippedEntry(path), true, path);
    for (const path of ['a.jpg', 'sub/a.jpg', 'a.txt']) assert.equal(isSkippedEntry(path), false, path);
  });

  test('stems pair an image with its caption', () => {
    assert.equal(pathStem('img01.jpg'), 'img01');
    assert.equal(pathStem('sub/img01.jpeg'), 'sub/img01');
    assert.equal(pathStem('sub.d/noext'), 'sub.d/noext');
  });
});

describe('extractZip', () => {
  test('returns images and captions, inflated, and skips the rest', async () => {
    const image = await jpeg({ width: 64, height: 64 });
    const zip = buildZip([
      { name: 'set/', data: '' , method: 'store' },
      { name: 'set/img01.jpg', data: image },
      { name: 'set/img01.txt', data: '\ufeffa photo of ohwx dog \n' },
      { name: 'set/img02.jpg', data: image, method: 'store' },
      { name: '__MACOSX/set/._img01.jpg', data: 'resource fork' },
      { name: 'set/.DS_Store', data: 'finder' },
    ]);
    const entries = await extractZip(zip, 'set.zip', limits);
    assert.deepEqual(entries.map((e) => [e.kind, e.path]), [['image', 'set/img01.jpg'], ['caption', 'set/img01.txt'], ['image', 'set/img02.jpg']]);
    assert.deepEqual(entries[0]!.kind === 'image' && entries[0]!.bytes, image);
    assert.equal(entries[1]!.kind === 'caption' && entries[1]!.text, 'a photo of ohwx dog');
  });

  test('refuses names with "..", absolute paths and backslashes as unsafe (400)', async () => {
    for (const name of ['../evil.jpg', 'a/../../evil.jpg', '/etc/evil.jpg', 'C:/evil.jpg', '..\\evil.jpg', 'a\\b.jpg']) {
      const error = await refusal(extractZip(buildZip([{ name, data: 'x' }]), 'bad.zip', limits));
      assert.equal(error.kind, 'archive-unsafe-path', name);
      assert.equal(error.status, 400);
    }
  });

  test('refuses symbolic links', async () => {
    const error = await refusal(extractZip(buildZip([{ name: 'link.jpg', data: '/etc/passwd', unixMode: 0o120777 }]), 'l.zip', limits));
    assert.equal(error.kind, 'archive-unsafe-path');
  });

  test('refuses an archive inside the archive', async () => {
    const inner = buildZip([{ name: 'a.jpg', data: 'x' }]);
    const error = await refusal(extractZip(buildZip([{ name: 'inner.zip', data: inner }]), 'outer.zip', limits));
    assert.equal(error.kind, 'archive-nested');
    assert.equal(error.status, 400);
    assert.equal(error.file, 'outer.zip/inner.zip');
  });

  test('a nested archive is found by its bytes even under an image name', async () => {
    const inner = buildZip([{ name: 'a.jpg', data: 'x' }]);
    const error = await refusal(extractZip(buildZip([{ name: 'photo.jpg', data: inner }]), 'outer.zip', limits));
    assert.equal(error.kind, 'archive-nested');
  });

  test('refuses a zip bomb whose header tells the truth, from the header (413)', async () => {
    const zeros = Buffer.alloc(32 * MiB);
    const error = await refusal(extractZip(buildZip([{ name: 'bomb.jpg', data: zeros }]), 'bomb.zip', limits));
    assert.equal(error.status, 413);
  });

  test('refuses a zip bomb whose header lies about its size, while inflating', async () => {
    const zeros = Buffer.alloc(32 * MiB);
    const zip = buildZip([{ name: 'bomb.jpg', data: zeros, claimedUncompressedSize: 1000 }]);
    const error = await refusal(extractZip(zip, 'bomb.zip', limits));
    // Either our byte counter or yauzl's size check stops it; neither lets it through.
    assert.ok(['archive-invalid', 'archive-too-large', 'file-too-large'].includes(error.kind), error.kind);
    assert.ok(error.status === 400 || error.status === 413);
  });

  test('refuses an entry past the compression ratio even under the size limits', async () => {
    const zeros = Buffer.alloc(8 * MiB);
    const error = await refusal(extractZip(buildZip([{ name: 'flat.jpg', data: zeros }]), 'flat.zip', limits));
    assert.equal(error.kind, 'archive-too-large');
    assert.match(error.message, /zip bomb/);
  });

  test('caps the total inflated size across entries', async () => {
    const chunk = Buffer.from(Array.from({ length: 6 * MiB }, (_, i) => (i * 7919) % 251));
    const zip = buildZip([{ name: 'a.jpg', data: chunk, method: 'store' }, { name: 'b.jpg', data: chunk, method: 'store' }]);
    const error = await refusal(extractZip(zip, 'big.zip', { ...limits, maxTotalBytes: 10 * MiB }));
    assert.equal(error.kind, 'archive-too-large');
    assert.equal(error.status, 413);
  });

  test('caps the number of entries from the central directory', async () => {
    const entries = Array.from({ length: limits.maxEntries + 1 }, (_, i) => ({ name: `f${i}.txt`, data: 'c' }));
    const error = await refusal(extractZip(buildZip(entries), 'many.zip', limits));
    assert.equal(error.kind, 'archive-too-many-entries');
    assert.equal(error.status, 413);
  });

  test('refuses a caption that is not UTF-8 or too long', async () => {
    const bad = await refusal(extractZip(buildZip([{ name: 'a.txt', data: Buffer.from([0xff, 0xfe, 0x00, 0xd8]) }]), 'c.zip', limits));
    assert.equal(bad.kind, 'caption-invalid');
    const long = await refusal(extractZip(buildZip([{ name: 'a.txt', data: 'x'.repeat(limits.maxCaptionBytes + 1) }]), 'c.zip', limits));
    assert.equal(long.status, 413);
  });

  test('refuses garbage and truncated archives as invalid (400)', async () => {
    const zip = buildZip([{ name: 'a.jpg', data: await jpeg({ width: 64, height: 64 }) }]);
    for (const bytes of [Buffer.from('PK\x03\x04 not really'), zip.subarray(0, zip.length - 30)]) {
      const error = await refusal(extractZip(bytes, 'broken.zip', limits));
      assert.equal(error.kind, 'archive-invalid');
      assert.equal(error.status, 400);
    }
  });

  test('refuses the same path twice', async () => {
    const error = await refusal(extractZip(buildZip([{ name: 'a.jpg', data: 'x' }, { name: 'A.JPG', data: 'y' }]), 'dup.zip', limits));
    assert.equal(error.kind, 'archive-invalid');
  });
});
