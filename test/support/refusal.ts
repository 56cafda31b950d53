// Awaits an upload step that must refuse its input and returns the ImageUploadError it threw.
import assert from 'node:assert/strict';
import { ImageUploadError } from '../../src/services/image-upload-error.js';

export async function refusal(promise: Promise<unknown>): Promise<ImageUploadError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof ImageUploadError, `expected an ImageUploadError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the input to be refused');
}
