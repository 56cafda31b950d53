// A folder as a tar made as it is read: GNU tar lists and unpacks it to the folder's files
// (links followed, long names kept), the same folder gives the same bytes, and a byte range
// of it is that slice of the whole.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { after, test } from 'node:test';
import { folderTarLayout, tarStream } from '../../src/storage/folder-tar.js';
import { readTar } from '../support/tar.js';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-tar-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

// A model folder: a trained component of its own, a component linked from a base, a long name.
const base = path.join(scratch, 'base');
fs.mkdirSync(path.join(base, 'vae'), { recursive: true });
fs.writeFileSync(path.join(base, 'vae', 'config.json'), '{"scaling_factor": 0.13}');
fs.writeFileSync(path.join(base, 'vae', 'weights.bin'), Buffer.alloc(1000, 7));
const model = path.join(scratch, 'model');
fs.mkdirSync(path.join(model, 'unet'), { recursive: true });
fs.writeFileSync(path.join(model, 'model_index.json'), '{}');
fs.writeFileSync(path.join(model, 'unet', 'diffusion_pytorch_model.safetensors'), Buffer.from(Array.from({ length: 513 }, (_, i) => i % 251)));
const longDir = path.join(model, 'a'.repeat(60), 'b'.repeat(60));
fs.mkdirSync(longDir, { recursive: true });
fs.writeFileSync(path.join(longDir, `${'c'.repeat(120)}.txt`), 'a name no ustar field holds');
fs.symlinkSync(path.join(base, 'vae'), path.join(model, 'vae'));

test('GNU tar unpacks it to the folder, links followed and long names kept', async () => {
  const layout = await folderTarLayout(model, 'tr_x-model');
  const bytes = await buffer(tarStream(layout));
  assert.equal(bytes.length, layout.size);
  assert.equal(bytes.length % 512, 0);
  const archive = path.join(scratch, 'model.tar');
  fs.writeFileSync(archive, bytes);
  const out = path.join(scratch, 'out');
  fs.mkdirSync(out);
  const unpacked = spawnSync('tar', ['-xf', archive, '-C', out], { encoding: 'utf8' });
  assert.equal(unpacked.status, 0, unpacked.stderr);
  const root = path.join(out, 'tr_x-model');
  assert.ok(!fs.lstatSync(path.join(root, 'vae')).isSymbolicLink(), 'the linked component is a folder of its own in the archive');
  assert.deepEqual(fs.readFileSync(path.join(root, 'vae', 'weights.bin')), fs.readFileSync(path.join(base, 'vae', 'weights.bin')));
  assert.deepEqual(fs.readFileSync(path.join(root, 'unet', 'diffusion_pytorch_model.safetensors')), fs.readFileSync(path.join(model, 'unet', 'diffusion_pytorch_model.safetensors')));
  const long = path.join(root, 'a'.repeat(60), 'b'.repeat(60), `${'c'.repeat(120)}.txt`);
  assert.equal(fs.readFileSync(long, 'utf8'), 'a name no ustar field holds');
  const names = readTar(bytes).filter((entry) => entry.type === 'file').map((entry) => entry.name);
  assert.deepEqual(names, layout.files.map((file) => file.name), 'the test reader sees what the layout lists');
  assert.ok(names.includes('tr_x-model/vae/weights.bin'));
  const listed = spawnSync('tar', ['-tf', archive], { encoding: 'utf8' });
  assert.equal(listed.status, 0, listed.stderr);
  assert.deepEqual(listed.stdout.trim().split('\n').filter((line) => !line.endsWith('/')), names);
});

test('the same folder gives the same bytes; a range is that slice of the whole', async () => {
  const whole = await buffer(tarStream(await folderTarLayout(model, 'tr_x-model')));
  const again = await buffer(tarStream(await folderTarLayout(model, 'tr_x-model')));
  assert.ok(whole.equals(again), 'the same bytes on every read');
  const layout = await folderTarLayout(model, 'tr_x-model');
  for (const [start, end] of [[0, 0], [0, 511], [500, 1700], [511, 513], [layout.size - 1100, layout.size - 1]] as const) {
    const slice = await buffer(tarStream(layout, { start, end }));
    assert.ok(slice.equals(whole.subarray(start, end + 1)), `bytes ${start}-${end}`);
  }
});

test('a file that shrank after the layout was made fails the stream instead of shifting the bytes after it', async () => {
  const folder = path.join(scratch, 'shrinks');
  fs.mkdirSync(folder);
  fs.writeFileSync(path.join(folder, 'a.bin'), Buffer.alloc(2000, 1));
  const layout = await folderTarLayout(folder, 'x');
  fs.writeFileSync(path.join(folder, 'a.bin'), Buffer.alloc(10, 1));
  await assert.rejects(buffer(tarStream(layout)), /changed while it was archived/);
});

test('a file of 8 GiB or more gets a pax size record (ustar holds 11 octal digits)', async () => {
  const folder = path.join(scratch, 'big');
  fs.mkdirSync(folder);
  const size = 8 * 1024 ** 3 + 10;
  fs.writeFileSync(path.join(folder, 'unet.bin'), '');
  fs.truncateSync(path.join(folder, 'unet.bin'), size); // sparse: no bytes written
  const layout = await folderTarLayout(folder, 'x');
  assert.deepEqual(layout.files, [{ name: 'x/unet.bin', size }]);
  const head = await buffer(tarStream(layout, { start: 0, end: 4 * 512 - 1 }));
  // The folder's entry, the pax header, its record, then the file's own header.
  assert.match(head.toString('latin1', 2 * 512, 3 * 512), /^\d+ size=8589934602\n/);
  assert.equal(head.toString('latin1', 3 * 512, 3 * 512 + 12), 'x/unet.bin\0\0');
  assert.equal(layout.size, 512 /* dir */ + 512 + 512 /* pax header and record */ + 512 /* header */ + Math.ceil(size / 512) * 512 + 1024);
});
