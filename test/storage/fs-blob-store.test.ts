import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FsBlobStore } from '../../src/storage/fs-blob-store.js';

describe('FsBlobStore', () => {
  let root: string;
  let store: FsBlobStore;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'blobs-'));
    store = new FsBlobStore(root);
  });
  after(() => rm(root, { recursive: true, force: true }));

  test('put stores the bytes under sha256/ab/cd/<hash> and returns their address', async () => {
    const bytes = Buffer.from('hello blob');
    const expected = createHash('sha256').update(bytes).digest('hex');
    const ref = await store.put(bytes);
    assert.deepEqual(ref, { sha256: expected, size: bytes.length });
    const path = join(root, 'sha256', expected.slice(0, 2), expected.slice(2, 4), expected);
    assert.deepEqual(await readFile(path), bytes);
    assert.deepEqual(await store.get(expected), bytes);
    assert.equal(await store.exists(expected), true);
  });

  test('putting the same bytes twice keeps one file and leaves no temp file behind', async () => {
    const bytes = Buffer.from('twice');
    const a = await store.put(bytes);
    const b = await store.put(bytes);
    assert.equal(a.sha256, b.sha256);
    const dir = join(root, 'sha256', a.sha256.slice(0, 2), a.sha256.slice(2, 4));
    assert.deepEqual(await readdir(dir), [a.sha256]);
  });

  test('a truncated file under the right name is rewritten on put', async () => {
    const bytes = Buffer.from('complete content');
    const ref = await store.put(bytes);
    await writeFile(store.pathOf(ref.sha256), bytes.subarray(0, 4));
    await store.put(bytes);
    assert.deepEqual(await store.get(ref.sha256), bytes);
  });

  test('stream yields the bytes; missing blobs are null, not errors', async () => {
    const bytes = Buffer.from('streamed');
    const ref = await store.put(bytes);
    const stream = await store.stream(ref.sha256);
    assert.ok(stream);
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    assert.deepEqual(Buffer.concat(chunks), bytes);
    const missing = 'f'.repeat(64);
    assert.equal(await store.stream(missing), null);
    assert.equal(await store.get(missing), null);
    assert.equal(await store.exists(missing), false);
  });

  test('delete removes the blob once and list shows what is stored', async () => {
    const ref = await store.put(Buffer.from('to delete'));
    const listed: string[] = [];
    for await (const sha of store.list()) listed.push(sha);
    assert.ok(listed.includes(ref.sha256));
    assert.equal(await store.delete(ref.sha256), true);
    assert.equal(await store.delete(ref.sha256), false);
    assert.equal(await store.exists(ref.sha256), false);
  });

  test('addresses that are not hex digests are refused before touching the disk', async () => {
    await assert.rejects(store.get('../../etc/passwd'), /SHA-256/);
    await assert.rejects(store.delete('ABC'), /SHA-256/);
  });
});
