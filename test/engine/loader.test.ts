// The addon loader: where it looks, and what it says when the addon is missing or broken.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';

import { addonCandidates, EngineLoadError, loadNativeAddon, packageRoot } from '../../src/engine/native.js';

test('SDXL_ENGINE_ADDON is the only path tried when set', () => {
  assert.deepEqual(addonCandidates({ SDXL_ENGINE_ADDON: '/opt/x/sdxl_engine.node' }), ['/opt/x/sdxl_engine.node']);
});

test('SDXL_NATIVE_BUILD_DIR comes before native/build, relative to the repository', () => {
  const root = packageRoot();
  assert.deepEqual(addonCandidates({ SDXL_NATIVE_BUILD_DIR: 'out/native' }), [
    path.join(root, 'out', 'native', 'sdxl_engine.node'),
    path.join(root, 'native', 'build', 'sdxl_engine.node'),
  ]);
  assert.deepEqual(addonCandidates({}), [path.join(root, 'native', 'build', 'sdxl_engine.node')]);
});

test('a missing addon names the paths tried and the build command', () => {
  const missing = path.join(tmpdir(), 'no-such-dir', 'sdxl_engine.node');
  assert.throws(
    () => loadNativeAddon(missing),
    (error: unknown) => {
      assert.ok(error instanceof EngineLoadError);
      assert.equal(error.code, 'ERR_SDXL_ADDON_LOAD');
      assert.match(error.message, /not built/);
      assert.ok(error.message.includes(missing), error.message);
      assert.match(error.message, /npm run build:native/);
      assert.match(error.message, /libtorch-dev/);
      return true;
    },
  );
});

test('a file that is not a loadable addon explains the failure and how to rebuild', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sdxl-loader-'));
  const broken = path.join(dir, 'sdxl_engine.node');
  writeFileSync(broken, 'not an ELF file');
  assert.throws(
    () => loadNativeAddon(broken),
    (error: unknown) => {
      assert.ok(error instanceof EngineLoadError);
      assert.ok(error.message.startsWith(`The SDXL native engine at ${broken} failed to load:`), error.message);
      assert.match(error.message, /npm run build:native/);
      assert.ok(error.cause instanceof Error);
      return true;
    },
  );
});

test('the built addon loads and reports its libtorch', () => {
  const addon = loadNativeAddon();
  const info = addon.buildInfo();
  assert.match(info.torchVersion, /^\d+\.\d+/);
  assert.equal(typeof info.cudaAvailable, 'boolean');
  assert.equal(info.cudaAvailable, info.cudaDeviceCount > 0);
  assert.equal(loadNativeAddon(), addon); // loaded once
});
