// Finds and loads the native addon `sdxl_engine.node`. When it is missing or
// libtorch does not load, the error says what is wrong and how to fix it.
//
// Where it looks, first match wins:
//   $SDXL_ENGINE_ADDON (a path to the .node file; nothing else is tried),
//   $SDXL_NATIVE_BUILD_DIR/sdxl_engine.node (the folder `npm run build:native` used),
//   native/build/sdxl_engine.node (the default build folder).
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import type { NativeAddon } from './types.js';

export const ADDON_FILE_NAME = 'sdxl_engine.node';
const PACKAGE_NAME = 'sdxl-lora-service';
const BUILD_HINT = 'npm run build:native';
const INSTALL_HINT = 'apt-get install -y cmake g++ libtorch-dev nlohmann-json3-dev';

export class EngineLoadError extends Error {
  readonly code = 'ERR_SDXL_ADDON_LOAD';
  override name = 'EngineLoadError';
}

// The repository root: the folder of our package.json, above this file in src/ or dist/src/.
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest)) {
      const { name } = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string };
      if (name === PACKAGE_NAME) return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir) return process.cwd();
    dir = parent;
  }
}

// The paths tried, in order.
export function addonCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const root = packageRoot();
  if (env.SDXL_ENGINE_ADDON) return [path.resolve(env.SDXL_ENGINE_ADDON)];
  const candidates: string[] = [];
  if (env.SDXL_NATIVE_BUILD_DIR) candidates.push(path.resolve(root, env.SDXL_NATIVE_BUILD_DIR, ADDON_FILE_NAME));
  candidates.push(path.join(root, 'native', 'build', ADDON_FILE_NAME));
  return candidates;
}

// Turns a dlopen failure into the likely cause and its fix.
function explainLoadFailure(file: string, error: Error): string {
  const reason = error.message;
  const lines = [`The SDXL native engine at ${file} failed to load: ${reason}`];
  if (/lib(torch|c10|torch_cpu|torch_cuda|gomp|mkl|cudart)[^ ]*\.so.*cannot open shared object file/.test(reason)) {
    lines.push(
      "libtorch's shared libraries are not on the loader's path.",
      `  - Debian/Ubuntu: ${INSTALL_HINT}`,
      '  - A PyTorch or libtorch download: add its lib folder to LD_LIBRARY_PATH, e.g.',
      '    export LD_LIBRARY_PATH="$(python3 -c \'import os,torch;print(os.path.join(os.path.dirname(torch.__file__),"lib"))\'):$LD_LIBRARY_PATH"',
      `  then rebuild: ${BUILD_HINT}`,
    );
  } else if (/cannot open shared object file/.test(reason)) {
    lines.push(`A shared library the engine needs is missing; install it or rebuild: ${BUILD_HINT}`);
  } else if (/undefined symbol|NODE_MODULE_VERSION|invalid ELF|wrong ELF class/.test(reason)) {
    lines.push(
      `The addon was built against a different libtorch or Node; rebuild it: ${BUILD_HINT}`,
      '(or point LD_LIBRARY_PATH at the libtorch it was built with)',
    );
  } else {
    lines.push(`Rebuild it with: ${BUILD_HINT}`);
  }
  return lines.join('\n');
}

const loaded = new Map<string, NativeAddon>();

// Loads the addon (once per path). `file` overrides the search.
export function loadNativeAddon(file?: string): NativeAddon {
  const candidates = file ? [path.resolve(file)] : addonCandidates();
  const found = candidates.find((candidate) => existsSync(candidate));
  if (!found) {
    throw new EngineLoadError(
      [
        `The SDXL native engine is not built: no ${ADDON_FILE_NAME} at ${candidates.join(' or ')}.`,
        `Build it with: ${BUILD_HINT}  (needs cmake, g++ and libtorch: ${INSTALL_HINT})`,
        'or set SDXL_ENGINE_ADDON to a built sdxl_engine.node (SDXL_NATIVE_BUILD_DIR to its build folder).',
      ].join('\n'),
    );
  }
  const cached = loaded.get(found);
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  let addon: NativeAddon;
  try {
    addon = require(found) as NativeAddon;
  } catch (error) {
    throw new EngineLoadError(explainLoadFailure(found, error as Error), { cause: error });
  }
  loaded.set(found, addon);
  return addon;
}
