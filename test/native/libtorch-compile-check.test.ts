// scripts/check-native-compile.mjs (npm run check:libtorch) really compiles against the
// PyTorch 2.14 headers of ../shared/libtorch-headers: it refuses the autograd API that
// 2.13 removed, and accepts the engine file that uses torch_compat.h in its place.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { projectRoot } from '../../src/paths.js';

function check(...sources: string[]): { status: number | null; output: string } {
  const result = spawnSync(process.execPath, ['scripts/check-native-compile.mjs', ...sources], {
    cwd: projectRoot,
    encoding: 'utf8',
  });
  return { status: result.status, output: result.stdout + result.stderr };
}

test('a source written for libtorch before 2.13 fails the check, naming what 2.14 lacks', () => {
  const { status, output } = check(path.join('test', 'native', 'fixtures', 'autograd-node-before-2.13.cpp'));
  assert.equal(status, 1, output);
  assert.match(output, /libtorch 2\.14\.1/);
  assert.match(output, /FAIL .*autograd-node-before-2\.13\.cpp/);
  assert.match(output, /'deleteNode' is not a member of 'torch::autograd'|‘deleteNode’ is not a member of ‘torch::autograd’/);
  assert.match(output, /0 of 1 sources compile/);
});

test('the gradient-checkpoint node, built through torch_compat.h, passes with the CUDA paths on', () => {
  const { status, output } = check(path.join('native', 'src', 'models', 'grad_checkpoint.cpp'));
  assert.equal(status, 0, output);
  assert.match(output, /ok {3}native\/src\/models\/grad_checkpoint\.cpp/);
  assert.match(output, /1 of 1 sources compile against libtorch 2\.14\.1/);
});
