// Validation of provider answers before they become training captions.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { checkCaption, checkCaptionAnswer, checkNormalizeAnswer } from '../../src/captioning/caption-output.js';
import { redactText, Secret } from '../../src/captioning/secrets.js';

const subject = { trigger: 'sks', classWord: 'woman' };

describe('checkCaption', () => {
  test('accepts a caption that starts with the trigger and names the class; trims and collapses whitespace', () => {
    assert.deepEqual(checkCaption('  sks woman,\n smiling,   red coat \n', subject, 100), { ok: true, value: 'sks woman, smiling, red coat' });
    assert.deepEqual(checkCaption('SKS woman, smiling', subject, 100), { ok: true, value: 'sks woman, smiling' }, 'trigger re-spelt as configured');
    assert.equal(checkCaption('sks, a young woman, smiling', subject, 100).ok, true);
  });
  test('refuses what is not a usable caption', () => {
    for (const [raw, reason] of [
      [undefined, /missing/], [42, /missing/], ['   ', /empty/],
      ['a photo of sks woman', /trigger/], ['sksy woman', /trigger/], ['sks, smiling', /class word/], ['sks womanly pose', /class word/],
      [`sks woman ${'x'.repeat(100)}`, /more than 50/],
    ] as const) {
      const checked = checkCaption(raw, subject, 50);
      assert.equal(checked.ok, false, String(raw));
      if (!checked.ok) assert.match(checked.reason, reason);
    }
  });
  test('triggers with regex characters are matched literally', () => {
    assert.equal(checkCaption('<s0> dog, running', { trigger: '<s0>', classWord: 'dog' }, 100).ok, true);
    assert.equal(checkCaption('<s0>> dog', { trigger: '<s0>', classWord: 'dog' }, 100).ok, true);
    assert.equal(checkCaption('s0 dog', { trigger: '<s0>', classWord: 'dog' }, 100).ok, false);
  });
});

describe('answers', () => {
  test('a caption answer must be an object with a caption', () => {
    assert.equal(checkCaptionAnswer(null, subject, 100).ok, false);
    assert.equal(checkCaptionAnswer(['sks woman'], subject, 100).ok, false);
    assert.equal(checkCaptionAnswer({ caption: 'sks woman' }, subject, 100).ok, true);
  });
  test('a normalize answer needs each id exactly once', () => {
    const ids = ['c1', 'c2'];
    const good = { captions: [{ id: 'c2', caption: 'sks woman, b' }, { id: 'c1', caption: 'sks woman, a' }] };
    assert.deepEqual(checkNormalizeAnswer(good, ids, subject, 100), { ok: true, value: ['sks woman, a', 'sks woman, b'] });
    assert.equal(checkNormalizeAnswer({ captions: [{ id: 'c1', caption: 'sks woman' }] }, ids, subject, 100).ok, false);
    assert.equal(checkNormalizeAnswer({ captions: [...good.captions, { id: 'c1', caption: 'sks woman' }] }, ids, subject, 100).ok, false);
    assert.equal(checkNormalizeAnswer({ captions: [...good.captions, { id: 'c3', caption: 'sks woman' }] }, ids, subject, 100).ok, false);
    assert.equal(checkNormalizeAnswer({ captions: [{ id: 'c1', caption: 'woman' }, good.captions[0]] }, ids, subject, 100).ok, false);
    assert.equal(checkNormalizeAnswer({}, ids, subject, 100).ok, false);
  });
});

describe('redactText', () => {
  test('removes keys and long base64 runs and cuts the text', () => {
    const text = redactText(`bad key k-123456 and data ${'QUJD'.repeat(100)} end`, [new Secret('k-123456'), undefined]);
    assert.equal(text, 'bad key [redacted] and data [data] end');
    assert.equal(redactText('x'.repeat(1000), []).length <= 303, true);
  });
});
