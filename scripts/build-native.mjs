#!/usr/bin/env node
// Configures and builds native/ with CMake: finds libtorch and Node's installed
// headers, then builds the engine library, the Node-API addon and the C++ tests.
//
// libtorch, in order: LIBTORCH_DIR (a libtorch folder or a CMake prefix),
// an importable Python torch, Debian's libtorch-dev (apt-get install libtorch-dev).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const buildDir = path.resolve(root, process.env.SDXL_NATIVE_BUILD_DIR ?? 'native/build');
const DEBIAN_TORCH = '/usr/lib/x86_64-linux-gnu/cmake/Torch';
const FIX = 'apt-get install -y cmake g++ libtorch-dev nlohmann-json3-dev';

function fail(message) {
  console.error(`build:native: ${message}`);
  process.exit(1);
}

function findLibtorch() {
  const fromEnv = process.env.LIBTORCH_DIR;
  if (fromEnv) {
    if (!existsSync(fromEnv)) fail(`LIBTORCH_DIR=${fromEnv} does not exist`);
    return { prefix: fromEnv, source: 'LIBTORCH_DIR' };
  }
  const py = spawnSync('python3', ['-c', 'import torch;print(torch.utils.cmake_prefix_path)'], { encoding: 'utf8' });
  if (py.status === 0 && py.stdout.trim()) return { prefix: py.stdout.trim(), source: 'python3 torch' };
  if (existsSync(DEBIAN_TORCH)) return { prefix: DEBIAN_TORCH, source: "Debian's libtorch-dev" };
  fail(`no libtorch found: set LIBTORCH_DIR, install PyTorch, or run: ${FIX}`);
}

function findNodeHeaders() {
  const candidates = [
    process.env.NODE_INCLUDE_DIR,
    path.resolve(path.dirname(process.execPath), '..', 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
  ].filter(Boolean);
  const found = candidates.find((dir) => existsSync(path.join(dir, 'node_api.h')));
  if (!found) fail(`Node's headers (node_api.h) not found in ${candidates.join(', ')}; set NODE_INCLUDE_DIR`);
  return found;
}

const require = createRequire(import.meta.url);
const addonApiDir = require('node-addon-api').include_dir.replace(/^"|"$/g, '');
const torch = findLibtorch();
const nodeInclude = findNodeHeaders();
console.log(`build:native: libtorch from ${torch.source} (${torch.prefix}), Node headers ${nodeInclude}`);

const cmake = (args) => execFileSync('cmake', args, { stdio: 'inherit', cwd: root });
try {
  cmake([
    '-S', path.join(root, 'native'), '-B', buildDir,
    `-DCMAKE_BUILD_TYPE=${process.env.CMAKE_BUILD_TYPE ?? 'Release'}`,
    `-DCMAKE_PREFIX_PATH=${torch.prefix}`,
    `-DNODE_INCLUDE_DIR=${nodeInclude}`,
    `-DNODE_ADDON_API_DIR=${path.resolve(root, addonApiDir)}`,
  ]);
  const jobs = process.env.SDXL_BUILD_JOBS ?? String(availableParallelism());
  cmake(['--build', buildDir, '--parallel', jobs]);
} catch (error) {
  fail(`CMake failed (${error.message.split('\n')[0]}). Missing tools? ${FIX}`);
}
