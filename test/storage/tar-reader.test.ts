// The streaming tar reader on archives GNU tar writes (gnu and posix formats: long names as
// GNU long-name entries or pax records), fed in awkward chunk sizes; damaged archives are
// refused rather than misread.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { TarFormatError, TarReader, type TarEntryHeader } from '../../src/storage/tar-reader.js';
import { buildTar } from '../support/tar.js';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-tar-reader-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

const longName = `${'folder-with-a-long-name/'.repeat(6)}photo-with-a-long-name.jpg`;
const files: Record<string, Buffer> = {
  'a.txt': Buffer.from('a caption\n'),
  'empty.bin': Buffer.alloc(0),
  'exact.bin': Buffer.alloc(512, 7),
  [longName]: Buffer.alloc(1500, 3),
};
for (const [name, data] of Object.entries(files)) {
  fs.mkdirSync(path.dirname(path.join(scratch, 'src', name)), { recursive: true });
  fs.writeFileSync(path.join(scratch, 'src', name), data);
}

async function* chunks(bytes: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

/** Every file entry with its data (every other one read, the rest skipped unread: they must not shift the stream). */
async function readAll(bytes: Buffer, chunkSize: number): Promise<Map<string, Buffer | 'skipped'>> {
  const reader = new TarReader(chunks(bytes, chunkSize));
  const out = new Map<string, Buffer | 'skipped'>();
  let header: TarEntryHeader | null;
  let index = 0;
  while ((header = await reader.next()) !== null) {
    if (header.kind !== 'file') continue;
    out.set(header.path, index++ % 2 === 0 ? Buffer.from(await reader.read(header.size)) : 'skipped');
  }
  return out;
}

for (const format of ['gnu', 'posix'] as const) {
  test(`reads a ${format} tar written by GNU tar, in any chunking`, async () => {
    const archive = path.join(scratch, `${format}.tar`);
    const tar = spawnSync('tar', ['--format', format, '-cf', archive, '-C', path.join(scratch, 'src'), ...Object.keys(files).sort()]);
    assert.equal(tar.status, 0, tar.stderr.toString());
    const bytes = fs.readFileSync(archive);
    for (const chunkSize of [1, 511, 4096, bytes.length]) {
      const entries = await readAll(bytes, chunkSize);
      assert.deepEqual([...entries.keys()].sort(), Object.keys(files).sort(), `chunks of ${chunkSize}`);
      for (const [name, data] of entries) if (data !== 'skipped') assert.deepEqual(data, files[name], `${name} in chunks of ${chunkSize}`);
    }
  });
}

test('a damaged header or a truncated archive is a TarFormatError, not a wrong entry', async () => {
  const good = buildTar([{ name: 'x.bin', data: Buffer.alloc(1000, 1) }]);
  const damaged = Buffer.from(good);
  damaged[10] = damaged[10]! ^ 0xff; // inside the name: the checksum no longer matches
  await assert.rejects(readAll(damaged, 512), TarFormatError);
  await assert.rejects(readAll(good.subarray(0, 700), 512), TarFormatError);
  await assert.rejects(readAll(Buffer.from('not a tar archive, but long enough to fill a header block. '.repeat(10)), 512), TarFormatError);
});
