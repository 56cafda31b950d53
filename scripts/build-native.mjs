#!/usr/bin/env node
// Configures and builds native/ with CMake: finds libtorch and Node's installed
// headers, then builds the engine library, the Node-API addon and the C++ tests.
//
// libtorch, in order: LIBTORCH_DIR, an importable Python torch, Debian's
// libtorch-dev (apt-get install libtorch-dev). LIBTORCH_DIR may be any of:
//   the folder holding TorchConfig.cmake   (/usr/lib/x86_64-linux-gnu/cmake/Torch)
//   an unpacked libtorch download          (…/libtorch, with share/cmake/Torch)
//   a CMake prefix                         (/usr, /opt/conda/lib/python3.x/site-packages/torch)
// --addon-only builds only the Node-API addon (what `npm start` needs).
// Environment: SDXL_NATIVE_BUILD_DIR (default native/build), SDXL_BUILD_JOBS,
// CMAKE_BUILD_TYPE (default Release), NODE_INCLUDE_DIR.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { findAddonApi, findNodeHeaders } from './node-headers.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const buildDir = path.resolve(root, process.env.SDXL_NATIVE_BUILD_DIR ?? 'native/build');
const DEBIAN_TORCH = '/usr/lib/x86_64-linux-gnu/cmake/Torch';
const TORCH_CONFIG = 'TorchConfig.cmake';
const FIX = 'apt-get install -y cmake g++ libtorch-dev nlohmann-json3-dev libopenblas0-pthread';
// Debian's libtorch does its float32 matrix products through libblas.so.3; the reference
// BLAS that Debian falls back to is about 30 times slower than OpenBLAS on a UNet.
const DEBIAN_BLAS = '/usr/lib/x86_64-linux-gnu/libblas.so.3';

function fail(message) {
  console.error(`build:native: ${message}`);
  process.exit(1);
}

// The CMake argument that makes the build use the libtorch at `dir` (see the header for
// the forms): its TorchConfig.cmake folder, from which native/cmake/find_torch.cmake also
// takes the libraries, so headers and libraries are always of one install.
function torchArguments(dir, source) {
  const archDirs = existsSync(path.join(dir, 'lib'))
    ? readdirSync(path.join(dir, 'lib')).map((entry) => path.join('lib', entry, 'cmake', 'Torch'))
    : [];
  const configDir = ['.', 'Torch', 'share/cmake/Torch', 'lib/cmake/Torch', ...archDirs]
    .map((relative) => path.resolve(dir, relative))
    .find((candidate) => existsSync(path.join(candidate, TORCH_CONFIG)));
  if (configDir) return { args: [`-DTorch_DIR=${configDir}`], dir: configDir, source };
  fail(
    `${source} gives ${dir}, which holds no ${TORCH_CONFIG} (looked in ., Torch, share/cmake/Torch, lib/cmake/Torch, lib/*/cmake/Torch).\n` +
      `  Debian: LIBTORCH_DIR=${DEBIAN_TORCH} after ${FIX}`,
  );
}

function findLibtorch() {
  const fromEnv = process.env.LIBTORCH_DIR;
  if (fromEnv) {
    if (!existsSync(fromEnv) || !statSync(fromEnv).isDirectory()) {
      fail(
        `LIBTORCH_DIR=${fromEnv} is not a folder.\n` +
          `  Point it at the folder holding ${TORCH_CONFIG} (Debian: ${DEBIAN_TORCH}) or an unpacked libtorch,\n` +
          `  or unset it to use Python's torch or Debian's libtorch-dev (${FIX}).`,
      );
    }
    return torchArguments(path.resolve(fromEnv), 'LIBTORCH_DIR');
  }
  const py = spawnSync('python3', ['-c', 'import torch;print(torch.utils.cmake_prefix_path)'], { encoding: 'utf8' });
  if (py.status === 0 && py.stdout.trim()) return torchArguments(py.stdout.trim(), 'python3 torch');
  if (existsSync(path.join(DEBIAN_TORCH, TORCH_CONFIG))) return torchArguments(DEBIAN_TORCH, "Debian's libtorch-dev");
  fail(`no libtorch found: set LIBTORCH_DIR, install PyTorch, or run: ${FIX}`);
}

function checkTool(command, purpose) {
  const probe = spawnSync(command, ['--version'], { encoding: 'utf8' });
  if (probe.error) fail(`${command} not found (${purpose}); install it: ${FIX}`);
}

function run(step, args, hint) {
  const result = spawnSync('cmake', args, { stdio: 'inherit', cwd: root });
  if (result.error) fail(`${step} could not start cmake (${result.error.message}); ${FIX}`);
  if (result.status !== 0) fail(`${step} failed (exit ${result.status ?? result.signal}). ${hint}`);
}

checkTool('cmake', 'builds native/');
const torch = findLibtorch();
const nodeInclude = findNodeHeaders(fail);
const addonApiDir = findAddonApi(fail);
if (torch.dir === DEBIAN_TORCH && existsSync(DEBIAN_BLAS) && realpathSync(DEBIAN_BLAS).includes('/blas/')) {
  console.warn('build:native: warning: libblas.so.3 is the reference BLAS; install OpenBLAS for fast CPU matrix products: apt-get install -y libopenblas0-pthread');
}
console.log(`build:native: libtorch from ${torch.source} (${torch.dir}), Node headers ${nodeInclude}, build in ${buildDir}`);

run(
  'CMake configure',
  [
    '-S', path.join(root, 'native'), '-B', buildDir,
    `-DCMAKE_BUILD_TYPE=${process.env.CMAKE_BUILD_TYPE ?? 'Release'}`,
    ...torch.args,
    `-DNODE_INCLUDE_DIR=${nodeInclude}`,
    `-DNODE_ADDON_API_DIR=${addonApiDir}`,
  ],
  `Read CMake's message above: a missing compiler, libtorch (find_package(Torch)) or nlohmann-json? ${FIX}` +
    (process.env.LIBTORCH_DIR ? `; check LIBTORCH_DIR=${process.env.LIBTORCH_DIR} holds ${TORCH_CONFIG}` : ''),
);
const jobs = process.env.SDXL_BUILD_JOBS ?? String(availableParallelism());
// --addon-only (npm start): just what the service loads, not the C++ tests and benchmarks.
const targets = process.argv.includes('--addon-only') ? ['--target', 'sdxl_addon'] : [];
run('Build', ['--build', buildDir, '--parallel', jobs, ...targets], 'The compiler errors are above.');
console.log(`build:native: built ${path.join(buildDir, 'sdxl_engine.node')}`);
