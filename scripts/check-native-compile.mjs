#!/usr/bin/env node
// Compile check of the native engine against a libtorch that is not installed:
// every native source (engine, addon, tests, benchmarks) compiled with
// -fsyntax-only against headers only, with the CUDA code paths on, and our CUDA
// kernels compiled by nvcc. An API break in a newer libtorch then fails here, on
// a machine without a GPU, before a GPU user finds it. Nothing is linked or run.
//
//   node scripts/check-native-compile.mjs [--headers FILE.tar.xz|DIR] [--cuda-include DIR|none]
//                                         [--nccl FILE.tar.xz|DIR|none] [--jobs N] [SOURCE ...]
//
// --headers       a PyTorch headers archive or unpacked folder holding torch/include and
//                 torch/share/cmake (default: ../shared/libtorch-headers/torch-*.tar.xz)
// --cuda-include  CUDA's headers (cuda_runtime.h); default: CUDA_HOME/include, else the
//                 include/ beside the nvcc on PATH. Without them the CUDA paths stay off
//                 and this says so.
// --nccl          NCCL's headers (an archive holding nccl/include/nccl.h, or a folder
//                 holding nccl.h) for the NCCL process group, checked with the CUDA paths
//                 (default: ../shared/libtorch-headers/nccl-*-include.tar.xz).
// SOURCE          check only these files (relative to the repository), e.g. in a test.
//
// Exit status: 0 when every source compiles, 1 when one does not, 2 on bad usage.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { findAddonApi, findNodeHeaders } from './node-headers.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const native = path.join(root, 'native');
const DEFAULT_HEADERS_DIR = path.resolve(root, '..', 'shared', 'libtorch-headers');
// Defines of the engine's targets in native/CMakeLists.txt, for a CUDA build of libtorch.
const CUDA_DEFINES = ['-DSDXL_WITH_CUDA=1', '-DSDXL_WITH_CUDA_KERNELS=1'];
// ... and where it finds nccl.h (the wheels ship no gloo headers: the Gloo path is Debian's build's).
const NCCL_DEFINES = ['-DSDXL_WITH_NCCL=1'];
const ADDON_DEFINES = ['-DNAPI_VERSION=8', '-DNODE_ADDON_API_DISABLE_DEPRECATED', '-DNODE_ADDON_API_CPP_EXCEPTIONS'];
// The engine's precompiled header, as target_precompile_headers gives it.
const PCH_HEADERS = ['<torch/torch.h>', '<nlohmann/json.hpp>'];

function usage(message) {
  console.error(`check-native-compile: ${message}`);
  process.exit(2);
}

function parseArguments(argv) {
  const options = { headers: undefined, cudaInclude: undefined, nccl: undefined, jobs: availableParallelism(), sources: [] };
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i];
    const value = () => argv[++i] ?? usage(`${argument} needs a value`);
    if (argument === '--headers') options.headers = value();
    else if (argument === '--cuda-include') options.cudaInclude = value();
    else if (argument === '--nccl') options.nccl = value();
    else if (argument === '--jobs') options.jobs = Number.parseInt(value(), 10);
    else if (argument.startsWith('--')) usage(`unknown option ${argument}`);
    else options.sources.push(path.resolve(argument));
  }
  if (!Number.isInteger(options.jobs) || options.jobs < 1) usage('--jobs must be a positive integer');
  return options;
}

// ---- libtorch headers ---------------------------------------------------------

// The newest <prefix>-*-include.tar.xz in the shared headers folder, or undefined.
function newestArchive(prefix) {
  const pattern = new RegExp(`^${prefix}-.*-include\\.tar\\.xz$`);
  const archives = existsSync(DEFAULT_HEADERS_DIR) ? readdirSync(DEFAULT_HEADERS_DIR).filter((name) => pattern.test(name)).sort() : [];
  return archives.length === 0 ? undefined : path.join(DEFAULT_HEADERS_DIR, archives[archives.length - 1]);
}

function defaultHeadersArchive() {
  return newestArchive('torch') ?? usage(`no --headers given and no torch-*-include.tar.xz in ${DEFAULT_HEADERS_DIR}`);
}

// ATen/cuda/CUDAContext.h (which ProcessGroupNCCL.hpp includes) includes the CUDA math
// libraries' headers for the handle types it declares functions with. A toolkit with only
// nvcc and the runtime has none; then these stand in, declaring those handle and status
// types opaquely, so the check still parses every libtorch and NCCL declaration our code
// uses (nothing here is linked or run).
const CUDA_LIBRARY_STUBS = {
  'cublas_v2.h': 'typedef struct cublasContext* cublasHandle_t;\ntypedef int cublasStatus_t;\n',
  'cublasLt.h': 'typedef struct cublasLtContext* cublasLtHandle_t;\n',
  'cusparse.h': 'typedef struct cusparseContext* cusparseHandle_t;\ntypedef int cusparseStatus_t;\n',
  'cusolver_common.h': 'typedef int cusolverStatus_t;\n',
  'cusolverDn.h': '#include <cusolver_common.h>\ntypedef struct cusolverDnContext* cusolverDnHandle_t;\n',
};

// The stand-ins' folder when `cudaInclude` lacks the math libraries' headers, else null.
function cudaLibraryStubs(cudaInclude) {
  if (existsSync(path.join(cudaInclude, 'cublas_v2.h'))) return null;
  const dir = path.join(native, 'build-headers', 'cuda-library-stubs');
  mkdirSync(dir, { recursive: true });
  for (const [name, body] of Object.entries(CUDA_LIBRARY_STUBS)) {
    writeFileSync(path.join(dir, name), `// Written by scripts/check-native-compile.mjs: a stand-in for the CUDA toolkit's ${name}.\n#pragma once\n${body}`);
  }
  return dir;
}

// The folder holding nccl.h, or null (no NCCL headers: the NCCL path is not checked).
function findNcclInclude(requested) {
  if (requested === 'none') return null;
  const source = requested ?? newestArchive('nccl');
  if (source === undefined) return null;
  if (!existsSync(source)) usage(`--nccl ${source} does not exist`);
  const dir = unpackedHeaders(path.resolve(source));
  const include = [dir, path.join(dir, 'include'), path.join(dir, 'nccl', 'include')].find((candidate) => existsSync(path.join(candidate, 'nccl.h')));
  if (include === undefined) usage(`--nccl ${source} holds no nccl.h`);
  return include;
}

// An archive is unpacked once into native/build-headers/<name>/ (kept while its size and time match).
function unpackedHeaders(headers) {
  if (statSync(headers).isDirectory()) return headers;
  const stamp = `${statSync(headers).size}:${statSync(headers).mtimeMs}`;
  const target = path.join(native, 'build-headers', path.basename(headers).replace(/\.tar\.xz$/, ''));
  const stampFile = path.join(target, '.unpacked-from');
  if (existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp) return target;
  mkdirSync(target, { recursive: true });
  const tar = spawnSync('tar', ['-xJf', headers, '-C', target], { stdio: 'inherit' });
  if (tar.status !== 0) usage(`could not unpack ${headers} (tar exit ${tar.status ?? tar.error?.message})`);
  writeFileSync(stampFile, stamp);
  return target;
}

// Version, include folders and C++ standard of the libtorch under `dir` (the folder holding torch/).
function describeLibtorch(dir) {
  const torch = existsSync(path.join(dir, 'torch', 'include')) ? path.join(dir, 'torch') : dir;
  const include = path.join(torch, 'include');
  if (!existsSync(path.join(include, 'torch', 'csrc', 'api', 'include', 'torch', 'torch.h'))) {
    usage(`${dir} holds no torch/include/torch/csrc/api/include/torch/torch.h`);
  }
  // version.py names the build (2.14.1+cu130); torch/version.h is in every libtorch.
  const versionPy = path.join(torch, 'version.py');
  const versionHeader = readFileSync(path.join(include, 'torch', 'csrc', 'api', 'include', 'torch', 'version.h'), 'utf8');
  const part = (name) => new RegExp(`#define TORCH_VERSION_${name} (\\d+)`).exec(versionHeader)?.[1] ?? '?';
  const version = existsSync(versionPy)
    ? (/__version__\s*=\s*'([^']+)'/.exec(readFileSync(versionPy, 'utf8'))?.[1] ?? 'unknown')
    : [part('MAJOR'), part('MINOR'), part('PATCH')].join('.');
  // The same rule as native/CMakeLists.txt: the torch target's CXX_STANDARD, at least 17.
  const config = path.join(torch, 'share', 'cmake', 'Torch', 'TorchConfig.cmake');
  const declared = existsSync(config) ? Number(/CXX_STANDARD\s+(\d+)/.exec(readFileSync(config, 'utf8'))?.[1]) : NaN;
  const standard = Number.isFinite(declared) && declared > 17 ? declared : 17;
  return { version, standard, includes: [include, path.join(include, 'torch', 'csrc', 'api', 'include')] };
}

// CUDA's own headers, from the toolkit where nvcc is installed.
function findCudaInclude(requested) {
  if (requested === 'none') return { include: null, nvcc: null };
  const nvccOnPath = spawnSync('sh', ['-c', 'command -v nvcc'], { encoding: 'utf8' }).stdout.trim();
  const candidates = requested
    ? [requested]
    : [
        process.env.CUDA_HOME && path.join(process.env.CUDA_HOME, 'include'),
        nvccOnPath && path.join(path.dirname(realpathSync(nvccOnPath)), '..', 'include'),
        '/usr/local/cuda/include',
      ].filter(Boolean);
  const include = candidates.find((dir) => existsSync(path.join(dir, 'cuda_runtime.h'))) ?? null;
  if (requested && !include) usage(`--cuda-include ${requested} holds no cuda_runtime.h`);
  const nvcc = include && existsSync(path.join(include, '..', 'bin', 'nvcc')) ? path.join(include, '..', 'bin', 'nvcc') : null;
  return { include: include && path.resolve(include), nvcc: nvcc && path.resolve(nvcc) };
}

// ---- sources ------------------------------------------------------------------

function listFiles(dir, pattern) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && pattern.test(entry.name))
    .map((entry) => path.join(entry.parentPath ?? entry.path, entry.name))
    .sort();
}

function allSources() {
  return [
    ...listFiles(path.join(native, 'src'), /\.cpp$/),
    ...listFiles(path.join(native, 'tests'), /\.cpp$/),
    ...listFiles(path.join(native, 'bench'), /\.cpp$/),
    ...listFiles(path.join(native, 'kernels'), /\.cu$/),
  ];
}

// ---- compiling ------------------------------------------------------------------

function run(command, args) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: native, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('error', (error) => resolve({ status: 127, output: `${command}: ${error.message}` }));
    child.on('close', (status) => resolve({ status: status ?? 1, output }));
  });
}

async function mapLimited(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await fn(items[index], index);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

async function main() {
  const options = parseArguments(process.argv.slice(2));
  const headers = path.resolve(options.headers ?? defaultHeadersArchive());
  if (!existsSync(headers)) usage(`--headers ${headers} does not exist`);
  const torch = describeLibtorch(unpackedHeaders(headers));
  const cuda = findCudaInclude(options.cudaInclude);
  const nccl = cuda.include ? findNcclInclude(options.nccl) : null;
  const stubs = nccl ? cudaLibraryStubs(cuda.include) : null;
  const fail = (message) => usage(message);
  const nodeInclude = findNodeHeaders(fail);
  const addonApi = findAddonApi(fail);

  const cxx = process.env.CXX || 'g++';
  const common = [
    `-std=c++${torch.standard}`,
    '-Wall', '-Wextra', '-Wno-unused-parameter',
    ...torch.includes.flatMap((dir) => ['-isystem', dir]),
    ...(cuda.include ? ['-isystem', cuda.include, ...CUDA_DEFINES] : []),
    ...(nccl ? ['-isystem', nccl, ...NCCL_DEFINES] : []),
    ...(stubs ? ['-isystem', stubs] : []),
    '-I', path.join(native, 'include'), '-I', path.join(native, 'src'),
  ];
  console.log(
    `check-native-compile: libtorch ${torch.version} headers (${headers}), C++${torch.standard}, ` +
      (cuda.include
        ? `CUDA paths on with ${cuda.include}, NCCL ${nccl ? `on with ${nccl}` : 'off (no nccl.h)'}` +
          (stubs ? ` (stand-ins for the CUDA math libraries' headers: ${stubs})` : '')
        : `CUDA paths OFF: ${options.cudaInclude === 'none' ? '--cuda-include none' : 'no CUDA toolkit headers found (cuda_runtime.h)'}; checking the CPU code only`),
  );

  // One precompiled header, as the real build has, so each source parses only itself.
  const pchDir = path.join(native, 'build-headers', `pch-${torch.version}-${cuda.include ? 'cuda' : 'cpu'}${nccl ? '-nccl' : ''}`);
  mkdirSync(pchDir, { recursive: true });
  const pchHeader = path.join(pchDir, 'engine_pch.h');
  const pchArgs = [...common, '-x', 'c++-header', pchHeader, '-o', `${pchHeader}.gch`];
  // Reused while the compiler, its flags and the unpacked headers are the same.
  const pchStamp = path.join(pchDir, 'built-with');
  const pchKey = JSON.stringify([cxx, pchArgs, PCH_HEADERS, statSync(torch.includes[0]).mtimeMs]);
  if (!existsSync(`${pchHeader}.gch`) || !existsSync(pchStamp) || readFileSync(pchStamp, 'utf8') !== pchKey) {
    writeFileSync(pchHeader, PCH_HEADERS.map((header) => `#include ${header}\n`).join(''));
    const pch = await run(cxx, pchArgs);
    if (pch.status !== 0) {
      console.error(`check-native-compile: FAIL <torch/torch.h> itself does not compile with these flags:\n${pch.output}`);
      process.exit(1);
    }
    writeFileSync(pchStamp, pchKey);
  }

  const sources = options.sources.length > 0 ? options.sources : allSources();
  const started = Date.now();
  const results = await mapLimited(sources, options.jobs, async (source) => {
    const relative = path.relative(root, source);
    if (source.endsWith('.cu')) {
      if (!cuda.nvcc) return { relative, skipped: 'no nvcc' };
      // The kernels are compiled for real (nvcc has no syntax-only mode), for one architecture,
      // in C++17 as native/CMakeLists.txt compiles them (they do not include libtorch).
      const args = ['-std=c++17', '--expt-relaxed-constexpr', '-arch=sm_90',
        '-I', path.join(native, 'src'), '-c', source, '-o', path.join(pchDir, `${path.basename(source)}.o`)];
      return { relative, ...(await run(cuda.nvcc, args)) };
    }
    const addon = source.startsWith(path.join(native, 'src', 'addon') + path.sep);
    const args = [
      ...common,
      ...(addon ? ['-isystem', nodeInclude, '-isystem', addonApi, ...ADDON_DEFINES] : []),
      '-Winvalid-pch', '-include', pchHeader,
      '-fsyntax-only', source,
    ];
    return { relative, ...(await run(cxx, args)) };
  });

  let failed = 0;
  for (const result of results) {
    if (result.skipped) {
      console.log(`  skip ${result.relative} (${result.skipped})`);
    } else if (result.status !== 0) {
      failed++;
      console.log(`  FAIL ${result.relative}\n${result.output}`);
    } else {
      console.log(`  ok   ${result.relative}${result.output.trim() ? `\n${result.output}` : ''}`);
    }
  }
  const checked = results.filter((result) => !result.skipped).length;
  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  console.log(
    `check-native-compile: ${checked - failed} of ${checked} sources compile against libtorch ${torch.version}` +
      `${failed ? `; ${failed} do not` : ''} (${seconds} s)`,
  );
  process.exit(failed ? 1 : 0);
}

await main();
