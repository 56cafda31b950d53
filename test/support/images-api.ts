// Calls of the images API shared by the images test files.
import assert from 'node:assert/strict';
import type { TestApp } from '../helper.js';
import { png } from './images.js';
import { filesBody, type MultipartBody } from './multipart.js';

export async function createDataset(t: TestApp, key = t.apiKey): Promise<string> {
  const response = await t.app.inject({
    method: 'POST',
    url: '/v1/datasets',
    headers: { authorization: `Bearer ${key}` },
    payload: { name: 'Rex the dog', class_word: 'dog' },
  });
  assert.equal(response.statusCode, 201, response.body);
  return response.json().id as string;
}

export function upload(t: TestApp, datasetId: string, body: MultipartBody, key = t.apiKey) {
  return t.app.inject({
    method: 'POST',
    url: `/v1/datasets/${datasetId}/images`,
    headers: { authorization: `Bearer ${key}`, ...body.headers },
    payload: body.payload,
  });
}

export async function imageCount(t: TestApp, datasetId: string): Promise<number> {
  const response = await t.app.inject({ method: 'GET', url: `/v1/datasets/${datasetId}`, headers: t.auth });
  assert.equal(response.statusCode, 200, response.body);
  return response.json().image_count as number;
}

/** A dataset with two photos (256x256 and 320x256) to train on. */
export async function datasetToTrain(t: TestApp): Promise<string> {
  const datasetId = await createDataset(t);
  const response = await upload(t, datasetId, filesBody([
    { name: 'a.png', data: await png({ width: 256, height: 256, seed: 3 }) },
    { name: 'b.png', data: await png({ width: 320, height: 256, seed: 4 }) },
  ]));
  assert.equal(response.statusCode, 201, response.body);
  return datasetId;
}
