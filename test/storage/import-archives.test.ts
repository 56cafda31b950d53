// The archive store of dataset imports: what a refused or failed write leaves behind.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { ArchiveTooLargeError, ImportArchives } from '../../src/storage/import-archives.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

test('a body past the limit in its first chunk leaves no partial file, even after its file open completes', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'sdxl-import-archives-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const archives = new ImportArchives(root);
  // Many at once: the thread pool then runs a removal beside the open of its own file.
  await Promise.all(Array.from({ length: 200 }, (_, i) =>
    assert.rejects(archives.write(`imp_${i}`, Readable.from([Buffer.alloc(4096, 1)]), 1024), ArchiveTooLargeError)));
  await sleep(100); // any open still pending has landed by now
  assert.deepEqual(await readdir(root), []);
  assert.deepEqual(await archives.ids(), []);
});

test('a stored archive is whole, hashed and counted; a source that fails leaves nothing', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'sdxl-import-archives-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const archives = new ImportArchives(root);
  const stored = await archives.write('imp_ok', Readable.from([Buffer.from('abc'), Buffer.from('def')]), 1024);
  assert.equal(stored.bytes, 6);
  assert.equal(stored.sha256, 'bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721');
  assert.deepEqual(await archives.ids(), ['imp_ok']);
  const failing = new Readable({ read() { this.destroy(new Error('the client went away')); } });
  await assert.rejects(archives.write('imp_gone', failing, 1024), /the client went away/);
  await sleep(100);
  assert.deepEqual((await readdir(root)).sort(), ['imp_ok.archive']);
});
