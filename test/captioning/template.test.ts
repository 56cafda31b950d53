// The template captioner: the DreamBooth instance prompt, no requests, identity normalize.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CaptionError } from '../../src/captioning/captioner.js';
import { TemplateCaptioner } from '../../src/captioning/template.js';

const image = { imageId: 'i', filename: 'a.jpg', sha256: 'a'.repeat(64), bytes: Buffer.from('not even decoded'), mediaType: 'image/jpeg' };

describe('TemplateCaptioner', () => {
  test('captions every image "a photo of {trigger} {class}" at no cost', async () => {
    const t = new TemplateCaptioner();
    const outcome = await t.caption(image, { trigger: 'sks', classWord: 'dog', styleHint: 'ignored' }, new AbortController().signal);
    assert.deepEqual(outcome, { caption: 'a photo of sks dog', model: 'template', promptVersion: 'template-v1', usage: { inputTokens: 0, outputTokens: 0 }, costUsd: 0 });
    assert.equal(t.provider, 'template');
  });

  test('normalize returns the captions unchanged', async () => {
    const captions = [{ imageId: 'a', caption: 'one' }, { imageId: 'b', caption: 'two' }];
    const result = await new TemplateCaptioner().normalize(captions, { trigger: 'sks', classWord: 'dog' }, new AbortController().signal);
    assert.deepEqual(result.captions, captions);
    assert.notEqual(result.captions, captions, 'a copy');
  });

  test('a canceled signal is a canceled CaptionError', async () => {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(new TemplateCaptioner().caption(image, { trigger: 'sks', classWord: 'dog' }, controller.signal),
      (err: unknown) => err instanceof CaptionError && err.code === 'canceled');
  });
});
