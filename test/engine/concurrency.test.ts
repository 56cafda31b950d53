// Several short calls in flight at once on one model give the same answers as
// the same calls made one after another.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { loadModel, type Model, type PromptEmbeddings, type TokenIds } from '../../src/engine/index.js';
import { tinyModelDir } from './fixtures.js';

const PROMPTS = [
  'a photo of an astronaut riding a horse',
  'a watercolor of a lighthouse at dusk!!!',
  '',
  'portrait, 85mm, soft light',
  'a photo of an astronaut riding a horse', // a repeat must match its twin
  'ÜBER café — naïve façade',
];

let model: Model;
before(async () => {
  model = await loadModel({ modelPath: tinyModelDir });
});
after(() => model.dispose());

test('parallel tokenize equals sequential tokenize', async () => {
  const sequential: TokenIds[] = [];
  for (const prompt of PROMPTS) sequential.push(await model.tokenize(prompt));
  const parallel = await Promise.all(PROMPTS.map((prompt) => model.tokenize(prompt)));
  assert.deepEqual(parallel, sequential);
  for (const ids of sequential) {
    assert.equal(ids.tokenizer.length, 77);
    assert.equal(ids.tokenizer2.length, 77);
  }
  assert.notDeepEqual(sequential[0], sequential[1]);
});

test('parallel encodePrompt equals sequential encodePrompt', async () => {
  const sequential: PromptEmbeddings[] = [];
  for (const prompt of PROMPTS) sequential.push(await model.encodePrompt(prompt));
  const parallel = await Promise.all([...PROMPTS, ...PROMPTS].map((prompt) => model.encodePrompt(prompt)));
  for (const [index, result] of parallel.entries()) {
    const expected = sequential[index % PROMPTS.length]!;
    assert.deepEqual(result.promptEmbeds.shape, expected.promptEmbeds.shape);
    assert.deepEqual(result.promptEmbeds.data, expected.promptEmbeds.data);
    assert.deepEqual(result.pooledPromptEmbeds.data, expected.pooledPromptEmbeds.data);
  }
  const [first] = sequential;
  assert.deepEqual(first!.promptEmbeds.shape, [1, 77, 24 + 40]); // tiny text encoders: hidden 24 and 40
  assert.deepEqual(first!.pooledPromptEmbeds.shape, [1, 32]); // projection 32
  assert.ok(first!.promptEmbeds.data.every(Number.isFinite));
  assert.notDeepEqual(sequential[0]!.promptEmbeds.data, sequential[1]!.promptEmbeds.data);
});

test('tokenize and encodePrompt interleaved with a generate job', async () => {
  const job = model.generate({ prompt: PROMPTS[0]!, width: 64, height: 64, steps: 3, seed: 1 });
  const [ids, embeddings] = await Promise.all([model.tokenize(PROMPTS[1]!), model.encodePrompt(PROMPTS[1]!)]);
  assert.deepEqual(ids, await model.tokenize(PROMPTS[1]!));
  assert.deepEqual(embeddings.promptEmbeds.data, (await model.encodePrompt(PROMPTS[1]!)).promptEmbeds.data);
  const [image] = await job.promise;
  assert.equal(image!.rgb.length, 64 * 64 * 3);
});
