// A full run's model folder links to its base model's components. Before it is registered,
// the folder is made to stand alone of other runs' folders: a link into another run's
// folder (a tenant model it was fine-tuned from) becomes a copy made of hard links, any
// other link points straight at its final target; deleting a model then removes links,
// never what they point to, and never another model's files.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { FsRunFileStore } from '../../src/storage/fs-run-file-store.js';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-run-files-'));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

function write(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
}

test('a model folder is detached from other runs: links into them become hard-linked copies, others point at their final target', async () => {
  const server = path.join(scratch, 'models', 'base');
  write(path.join(server, 'vae', 'weights.safetensors'), 'server vae');
  write(path.join(server, 'tokenizer', 'vocab.json'), '{}');
  const store = new FsRunFileStore(path.join(scratch, 'runs'));
  // Run A fine-tuned the server model with its text encoder: vae and tokenizer link to the server's.
  const a = path.join(await store.workDir('tr_a'), 'model');
  write(path.join(a, 'unet', 'weights.safetensors'), 'unet of A');
  write(path.join(a, 'text_encoder', 'weights.safetensors'), 'text encoder of A');
  fs.symlinkSync(path.join(server, 'vae'), path.join(a, 'vae'));
  fs.symlinkSync(path.join(server, 'tokenizer'), path.join(a, 'tokenizer'));
  // Run B fine-tuned A's model without its text encoder: the trainer linked B's to A's, and B's vae to A's link.
  const b = path.join(await store.workDir('tr_b'), 'model');
  write(path.join(b, 'unet', 'weights.safetensors'), 'unet of B');
  fs.symlinkSync(path.join(a, 'text_encoder'), path.join(b, 'text_encoder'));
  fs.symlinkSync(path.join(a, 'vae'), path.join(b, 'vae'));
  const ownBefore = await store.ownBytes('tr_b', ['model']);
  assert.equal(ownBefore, 'unet of B'.length, 'links count as nothing of their own');

  await store.detachLinks('tr_b', 'model');
  const encoder = path.join(b, 'text_encoder');
  assert.ok(!fs.lstatSync(encoder).isSymbolicLink(), "A's text encoder is B's own now");
  assert.equal(fs.statSync(path.join(encoder, 'weights.safetensors')).ino, fs.statSync(path.join(a, 'text_encoder', 'weights.safetensors')).ino, 'a hard link: no bytes copied');
  assert.equal(fs.readlinkSync(path.join(b, 'vae')), fs.realpathSync(path.join(server, 'vae')), "the server's vae, no longer through A");
  assert.equal(await store.ownBytes('tr_b', ['model']), ownBefore + 'text encoder of A'.length, 'the copy is B\'s to count');
  assert.deepEqual(fs.readdirSync(b).sort(), ['text_encoder', 'unet', 'vae'], 'no staging entry left');

  // A's model goes: B's stands, and the server's files are untouched.
  await store.deleteFiles('tr_a', ['model', 'model.safetensors']);
  assert.ok(!fs.existsSync(a));
  assert.equal(fs.readFileSync(path.join(b, 'text_encoder', 'weights.safetensors'), 'utf8'), 'text encoder of A');
  assert.equal(fs.readFileSync(path.join(b, 'vae', 'weights.safetensors'), 'utf8'), 'server vae');
  await store.deleteFiles('tr_b', ['model']);
  assert.equal(fs.readFileSync(path.join(server, 'vae', 'weights.safetensors'), 'utf8'), 'server vae', 'deleting removes links, never their targets');
  assert.ok(fs.existsSync(path.join(server, 'tokenizer', 'vocab.json')));
});
