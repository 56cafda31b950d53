// src/console/dataset-imports.ts: how the dataset page reads an archive import (issue 26) from its event stream and its list, and what it says about it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  archiveContentType,
  datasetImportOf,
  datasetImportsOf,
  importEventOf,
  importFraction,
  importProgressText,
  type DatasetImport,
} from '../../src/console/dataset-imports.js';

const running = {
  id: 'imp_01J0000000000000000000000',
  object: 'dataset_import',
  dataset_id: 'ds_01J0000000000000000000000',
  status: 'running',
  filename: 'photos.tar.gz',
  format: 'tar.gz',
  bytes: 4 * 1024 * 1024,
  sha256: 'ab'.repeat(32),
  progress: { bytes_read: 1024 * 1024, entries_read: 40, images_stored: 30, duplicates: 5, captions_attached: 28, refused: 2 },
  refusals: [
    { entry: 'photos/notes.pdf', code: 'unsupported-type', detail: 'a PDF document, not an image' },
    { entry: 'metadata.jsonl:3', code: 'invalid-metadata', detail: 'not a JSON object with file_name and text' },
  ],
  refusals_truncated: false,
  caption_conflicts: 1,
  error: null,
  created_at: '2026-12-07T07:00:00.000Z',
  started_at: '2026-12-07T07:00:01.000Z',
  completed_at: null,
};

const sse = (event: string, data: unknown) => ({ event, data: typeof data === 'string' ? data : JSON.stringify(data), id: '' });

test('progress events and the final event carry the import; other events and malformed data are none', () => {
  const progress = importEventOf(sse('progress', running));
  assert.equal(progress?.type, 'progress');
  assert.deepEqual(progress?.import.progress, running.progress);
  assert.deepEqual(progress?.import.refusals, running.refusals);
  assert.equal(progress?.import.caption_conflicts, 1);

  const done = importEventOf(sse('succeeded', { ...running, status: 'succeeded', completed_at: '2026-12-07T07:01:00.000Z' }));
  assert.deepEqual([done?.type, done?.import.status, done?.import.completed_at], ['succeeded', 'succeeded', '2026-12-07T07:01:00.000Z']);
  const failed = importEventOf(sse('failed', { ...running, status: 'failed', error: { code: 'unreadable-archive', message: 'not a gzip stream' } }));
  assert.deepEqual(failed?.import.error, { code: 'unreadable-archive', message: 'not a gzip stream' });
  assert.equal(importEventOf(sse('canceled', { ...running, status: 'canceled' }))?.type, 'canceled');

  assert.equal(importEventOf(sse('message', running)), null, 'an event of another kind');
  assert.equal(importEventOf(sse('progress', '{"id": "imp_1", "stat')), null, 'cut-off JSON');
  assert.equal(importEventOf(sse('progress', { id: 'imp_1', status: 'exploded' })), null, 'an unknown status');
  assert.equal(importEventOf(sse('progress', [running])), null);
});

test('odd fields read as zero or none, not as errors', () => {
  const sparse = datasetImportOf({ id: 'imp_2', status: 'queued', progress: { bytes_read: -1, images_stored: 'many' }, refusals: [null, { entry: 'a.gif' }] });
  assert.ok(sparse !== null);
  assert.deepEqual(sparse.progress, { bytes_read: 0, entries_read: 0, images_stored: 0, duplicates: 0, captions_attached: 0, refused: 0 });
  assert.deepEqual(sparse.refusals, [{ entry: 'a.gif', code: '', detail: '' }]);
  assert.deepEqual([sparse.filename, sparse.format, sparse.error, sparse.bytes], [null, null, null, 0]);
  assert.deepEqual(datasetImportsOf({ data: [running, { status: 'running' }], next_cursor: 'abc' }).data.map((entry) => entry.id), [running.id]);
  assert.deepEqual(datasetImportsOf({ type: 'about:blank', status: 404 }), { data: [], next_cursor: null });
});

test('what the page says: bytes read while it runs, then the counts; the bar follows the bytes', () => {
  const entry = datasetImportOf(running) as DatasetImport;
  assert.equal(importProgressText(entry), '1.0 MB of 4.0 MB read · 30 images stored · 5 already in the dataset · 28 with captions · 2 refused');
  assert.equal(importFraction(entry), 0.25);
  const finished = { ...entry, status: 'succeeded' as const, progress: { ...entry.progress, bytes_read: entry.bytes, duplicates: 0, refused: 0, captions_attached: 0 } };
  assert.equal(importProgressText(finished), '30 images stored');
  assert.equal(importFraction(finished), 1);
  assert.equal(importFraction({ ...entry, bytes: 0 }), 0, 'an empty archive: no division by zero');
});

test('the raw body is sent as the type its name says; the API sniffs the bytes anyway', () => {
  assert.equal(archiveContentType('photos.zip'), 'application/zip');
  assert.equal(archiveContentType('Photos.TAR'), 'application/x-tar');
  assert.equal(archiveContentType('photos.tar.gz'), 'application/gzip', 'not tar');
  assert.equal(archiveContentType('photos.tgz'), 'application/gzip');
  assert.equal(archiveContentType('photos.7z'), 'application/octet-stream');
});
