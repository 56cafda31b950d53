// The CaptionError a captioner's promise rejects with, for the provider tests.
import assert from 'node:assert/strict';

import { CaptionError } from '../../src/captioning/captioner.js';

/** Awaits `promise`, asserts it rejects with a CaptionError and returns that error. */
export async function captionRejection(promise: Promise<unknown>): Promise<CaptionError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof CaptionError, `expected CaptionError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a rejection');
}
