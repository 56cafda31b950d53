import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sniffFormat } from '../../src/services/file-sniffing.js';
import { validateImage, type ImageLimits } from '../../src/services/image-validation.js';
import { animatedWebp, gif, jpeg, png, pngHeaderClaiming, svg, tiff, webp } from '../support/images.js';
import { buildZip } from '../support/zip.js';
import { refusal } from '../support/refusal.js';

const limits: ImageLimits = { maxBytes: 5 * 1024 * 1024, maxPixels: 4_000_000, minSide: 256 };

describe('sniffFormat', () => {
  test('names formats from their bytes', async () => {
    const spec = { width: 16, height: 16 };
    assert.equal(sniffFormat(await jpeg(spec)), 'jpeg');
    assert.equal(sniffFormat(await png(spec)), 'png');
    assert.equal(sniffFormat(await webp(spec)), 'webp');
    assert.equal(sniffFormat(await gif(spec)), 'gif');
    assert.equal(sniffFormat(await tiff(spec)), 'tiff');
    assert.equal(sniffFormat(svg(spec)), 'svg');
    assert.equal(sniffFormat(buildZip([{ name: 'a.txt', data: 'a' }])), 'zip');
    assert.equal(sniffFormat(Buffer.from('just some text')), 'unknown');
    assert.equal(sniffFormat(Buffer.alloc(0)), 'unknown');
  });
});

describe('validateImage', () => {
  test('accepts JPEG, PNG and WebP and reports format and size', async () => {
    for (const [make, format] of [[jpeg, 'jpeg'], [png, 'png'], [webp, 'webp']] as const) {
      const bytes = await make({ width: 320, height: 288 });
      const result = await validateImage(bytes, `x.${format}`, limits);
      assert.deepEqual(result, { format, mediaType: `image/${format}`, width: 320, height: 288, byteSize: bytes.length });
    }
  });

  test('applies EXIF orientation 6 to the recorded width and height', async () => {
    const bytes = await jpeg({ width: 300, height: 200, orientation: 6 });
    const result = await validateImage(bytes, 'rotated.jpg', { ...limits, minSide: 100 });
    assert.equal(result.width, 200);
    assert.equal(result.height, 300);
  });

  test('refuses an empty file with 400', async () => {
    const error = await refusal(validateImage(Buffer.alloc(0), 'empty.jpg', limits));
    assert.equal(error.status, 400);
    assert.equal(error.kind, 'empty-file');
  });

  test('refuses files over the byte limit with 413 before looking inside', async () => {
    const error = await refusal(validateImage(Buffer.alloc(limits.maxBytes + 1, 0xff), 'big.jpg', limits));
    assert.equal(error.status, 413);
    assert.equal(error.kind, 'file-too-large');
  });

  test('refuses GIF, TIFF, SVG and text with 415 whatever the name says', async () => {
    const spec = { width: 300, height: 300 };
    for (const bytes of [await gif(spec), await tiff(spec), svg(spec), Buffer.from('not an image at all')]) {
      const error = await refusal(validateImage(bytes, 'photo.jpg', limits));
      assert.equal(error.status, 415);
      assert.equal(error.kind, 'unsupported-media-type');
      assert.equal(error.file, 'photo.jpg');
    }
  });

  test('refuses a truncated JPEG with 422 (the pixels are decoded, not just the header)', async () => {
    const bytes = await jpeg({ width: 512, height: 512 });
    const error = await refusal(validateImage(bytes.subarray(0, Math.floor(bytes.length * 0.6)), 'cut.jpg', limits));
    assert.equal(error.status, 422);
    assert.equal(error.kind, 'corrupt-image');
  });

  test('refuses a truncated PNG with 422', async () => {
    const bytes = await png({ width: 300, height: 300 });
    const error = await refusal(validateImage(bytes.subarray(0, bytes.length - 100), 'cut.png', limits));
    assert.equal(error.status, 422);
    assert.equal(error.kind, 'corrupt-image');
  });

  test('refuses a PNG header claiming 20000x20000 from the header alone', async () => {
    const bomb = pngHeaderClaiming(20000, 20000);
    // Decoding it would fail as corrupt (it carries one row of pixels); the refusal must be the pixel limit.
    const started = process.hrtime.bigint();
    const error = await refusal(validateImage(bomb, 'bomb.png', { ...limits, maxPixels: 50_000_000 }));
    const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
    assert.equal(error.kind, 'image-too-many-pixels');
    assert.equal(error.status, 422);
    assert.match(error.message, /20000x20000/);
    assert.ok(elapsedMs < 1000, `took ${elapsedMs} ms`);
  });

  test('refuses an image whose shorter side is under the minimum with 422', async () => {
    const error = await refusal(validateImage(await png({ width: 1000, height: 200 }), 'thin.png', limits));
    assert.equal(error.status, 422);
    assert.equal(error.kind, 'image-too-small');
    assert.match(error.message, /1000x200/);
  });

  test('refuses an animated WebP with 415', async () => {
    const error = await refusal(validateImage(await animatedWebp({ width: 300, height: 300 }), 'anim.webp', limits));
    assert.equal(error.status, 415);
    assert.match(error.message, /animated/);
  });

  test('refuses a zip given where an image is expected with 415', async () => {
    const error = await refusal(validateImage(buildZip([{ name: 'a.jpg', data: 'x' }]), 'a.jpg', limits));
    assert.equal(error.status, 415);
  });
});
