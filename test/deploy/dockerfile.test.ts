// The Dockerfile and .dockerignore, checked without building anything (CI has no container
// engine): for each variant (ARG VARIANT: cpu, cuda) the stages it builds, then the image
// (the last stage and the stages below it): a numeric non-root user, the health check,
// tini, HOST, the volumes, Node 24, no compiler, nothing but built files and the files the
// service reads; the build: CI's packages, npm ci, tsc, the addon; the build context:
// every file copied exists and is not left out by .dockerignore.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { Copy, DockerfileParser, From, Healthcheck, type Instruction, JSONInstruction, PropertyInstruction } from 'dockerfile-ast';

const root = fileURLToPath(new URL('../../', import.meta.url));
const dockerfileText = fs.readFileSync(path.join(root, 'Dockerfile'), 'utf8');
const dockerfile = DockerfileParser.parse(dockerfileText);

// README's test command installs these for tests only (the Helm chart's Go test, a
// browser); the image's build stage needs none of them.
const TEST_ONLY_PACKAGES = new Set(['golang-go', 'chromium']);
const VARIANTS = ['cpu', 'cuda'] as const;
type Variant = (typeof VARIANTS)[number];

// ---- the Dockerfile as stages ------------------------------------------------------------

interface Stage {
  name: string | undefined;
  image: string; // as written, ${ARG}s unexpanded
  instructions: Instruction[];
}

const globalArgs = new Map<string, string>();
const stages: Stage[] = [];
for (const instruction of dockerfile.getInstructions()) {
  if (instruction instanceof From) {
    stages.push({ name: instruction.getBuildStage() ?? undefined, image: instruction.getArguments()[0]!.getValue(), instructions: [] });
  } else if (stages.length > 0) {
    stages.at(-1)!.instructions.push(instruction);
  } else if (instruction.getKeyword() === 'ARG' && instruction instanceof PropertyInstruction) {
    for (const property of instruction.getProperties()) globalArgs.set(property.getName(), unquote(property.getValue() ?? ''));
  }
}

function unquote(value: string): string {
  return /^"(.*)"$/.exec(value)?.[1] ?? value;
}

// ${NAME} and $NAME from the global ARGs (what FROM lines may use), with the variant's.
function expand(text: string, variant: Variant): string {
  const args = new Map(globalArgs).set('VARIANT', variant);
  return text.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, braced?: string, bare?: string) => args.get((braced ?? bare)!) ?? whole);
}

function stageNamed(name: string): Stage | undefined {
  return stages.find((stage) => stage.name?.toLowerCase() === name.toLowerCase());
}

// The stages an image is made of, base first, and the external image at the bottom.
function chain(stage: Stage, variant: Variant): { baseImage: string; stages: Stage[] } {
  const parent = stageNamed(expand(stage.image, variant));
  if (!parent) return { baseImage: expand(stage.image, variant), stages: [stage] };
  const below = chain(parent, variant);
  return { baseImage: below.baseImage, stages: [...below.stages, stage] };
}

function stageOf(name: string, variant: Variant): { baseImage: string; stages: Stage[]; instructions: Instruction[] } {
  const stage = stageNamed(expand(name, variant));
  assert.ok(stage, `the Dockerfile has a stage ${name} (${variant})`);
  const resolved = chain(stage, variant);
  return { ...resolved, instructions: resolved.stages.flatMap((s) => s.instructions) };
}

// The stage a COPY --from names: a stage of this Dockerfile (its base image) or an image.
function copySourceImage(from: string, variant: Variant): string {
  const stage = stageNamed(expand(from, variant));
  return stage ? chain(stage, variant).baseImage : expand(from, variant);
}

const words = (instruction: Instruction): string[] => instruction.getArguments().map((argument) => argument.getValue());
const of = (instructions: Instruction[], keyword: string): Instruction[] => instructions.filter((i) => i.getKeyword() === keyword);
const runCommands = (instructions: Instruction[]): string[] => of(instructions, 'RUN').map((run) => words(run).join(' '));
const jsonForm = (instruction: Instruction): string[] =>
  instruction instanceof JSONInstruction ? instruction.getJSONStrings().map((s) => s.getJSONValue()) : [];

function envOf(instructions: Instruction[]): Map<string, string> {
  const env = new Map<string, string>();
  for (const instruction of of(instructions, 'ENV')) {
    if (instruction instanceof PropertyInstruction) {
      for (const property of instruction.getProperties()) env.set(property.getName(), unquote(property.getValue() ?? ''));
    }
  }
  return env;
}

// The packages of every `apt-get install` in a shell command.
function aptInstalls(command: string): string[] {
  const packages: string[] = [];
  for (const segment of command.split(/&&|\|\||;|\|/)) {
    const w = segment.trim().split(/\s+/);
    const at = w.findIndex((word, i) => (word === 'apt-get' || word === 'apt') && w[i + 1] === 'install');
    if (at >= 0) packages.push(...w.slice(at + 2).filter((word) => !word.startsWith('-')));
  }
  return packages;
}

interface CopyStep {
  from: string | undefined; // --from, or undefined: the build context
  sources: string[];
  destination: string; // absolute, against the WORKDIR in force
}

function copies(instructions: Instruction[]): CopyStep[] {
  let workdir = '/';
  const steps: CopyStep[] = [];
  for (const instruction of instructions) {
    if (instruction.getKeyword() === 'WORKDIR') workdir = path.posix.resolve(workdir, words(instruction)[0]!);
    if (instruction.getKeyword() === 'ADD') assert.fail(`ADD at line ${instruction.getRange().start.line + 1}: use COPY`);
    if (!(instruction instanceof Copy)) continue;
    const paths = jsonForm(instruction).length > 0 ? jsonForm(instruction) : words(instruction);
    const destination = paths.at(-1)!;
    const target = path.posix.resolve(workdir, destination) + (destination.endsWith('/') ? '/' : '');
    steps.push({ from: instruction.getFromFlag()?.getValue() ?? undefined, sources: paths.slice(0, -1), destination: target });
  }
  return steps;
}

// Where a copied path lands: a file copied into a folder (destination ending in /) keeps its
// name; a folder's contents go to the destination. (A folder copied into `./` would spill its
// contents: the Dockerfile names each folder's destination.)
function landed(step: CopyStep, source: string): string {
  return step.destination.endsWith('/') && !source.endsWith('/')
    ? path.posix.join(step.destination, path.posix.basename(source))
    : step.destination.replace(/\/$/, '');
}

function workdirOf(instructions: Instruction[]): string {
  return of(instructions, 'WORKDIR').reduce((dir, w) => path.posix.resolve(dir, words(w)[0]!), '/');
}

// ---- .dockerignore, with Docker's rules ----------------------------------------------------
// Patterns in order, the last that matches a path or one of its parent folders decides;
// `!` lets back in; `*` and `?` stop at `/`, `**` crosses folders.

interface IgnorePattern {
  negated: boolean;
  regex: RegExp;
  text: string;
}

function compileIgnore(text: string): IgnorePattern[] {
  const patterns: IgnorePattern[] = [];
  for (const raw of text.split(/\r?\n/)) {
    let line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const negated = line.startsWith('!');
    if (negated) line = line.slice(1).trim();
    line = path.posix.normalize(line).replace(/^\/+/, '').replace(/\/+$/, '');
    let source = '^';
    for (let i = 0; i < line.length; i++) {
      const ch = line[i]!;
      if (ch === '*' && line[i + 1] === '*') {
        i++;
        if (line[i + 1] === '/') i++;
        source += i + 1 >= line.length ? '.*' : '(.*/)?';
      } else if (ch === '*') source += '[^/]*';
      else if (ch === '?') source += '[^/]';
      else if (ch === '[') {
        const end = line.indexOf(']', i);
        source += end > i ? line.slice(i, end + 1) : '\\[';
        if (end > i) i = end;
      } else source += ch.replace(/[.+^${}()|\\]/g, '\\$&');
    }
    patterns.push({ negated, regex: new RegExp(source + '$'), text: raw.trim() });
  }
  return patterns;
}

const ignore = compileIgnore(fs.readFileSync(path.join(root, '.dockerignore'), 'utf8'));

function excluded(relative: string): boolean {
  const parts = relative.replace(/\/+$/, '').split('/');
  const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let out = false;
  for (const pattern of ignore) {
    if (candidates.some((candidate) => pattern.regex.test(candidate))) out = !pattern.negated;
  }
  return out;
}

// ---- README's test command, read as .ci/run reads it ------------------------------------------

function readmeTestCommand(): string {
  const ciRun = fs.readFileSync(path.join(root, '.ci/run'), 'utf8');
  assert.match(ciRun, /<!-- test-command -->/, '.ci/run still takes the command from README between the test-command markers');
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8').split('\n');
  const start = readme.findIndex((line) => line.includes('<!-- test-command -->'));
  const end = readme.findIndex((line, i) => i > start && line.includes('<!-- /test-command -->'));
  assert.ok(start >= 0 && end > start, 'README has the test-command markers');
  return readme
    .slice(start, end + 1)
    .filter((line) => !line.startsWith('<!--') && !line.startsWith('```'))
    .join('\n');
}

// ---- the checks -----------------------------------------------------------------------------

test('one Dockerfile: ARG VARIANT (default cpu) picks the build and runtime stages; the last stage is the image', () => {
  assert.equal(globalArgs.get('VARIANT'), 'cpu', 'a plain `docker build .` builds the CPU image');
  const variants = stages.map((stage) => /^runtime-(.+)$/.exec(stage.name ?? '')?.[1]).filter(Boolean);
  assert.deepEqual(variants.sort(), [...VARIANTS], 'one runtime-<variant> stage per variant');
  for (const variant of VARIANTS) {
    assert.ok(stageNamed(`build-${variant}`), `stage build-${variant}`);
    assert.equal(stageOf('build', variant).stages[0]!.name, `build-${variant}`);
    const last = stages.at(-1)!;
    assert.equal(chain(last, variant).stages[0]!.name, `runtime-${variant}`, 'the last stage stands on runtime-${VARIANT}');
  }
  assert.equal(stages.at(-1)!.name, 'runtime');
});

for (const variant of VARIANTS) {
  describe(`the ${variant} image`, () => {
    const image = chain(stages.at(-1)!, variant);
    const instructions = image.stages.flatMap((stage) => stage.instructions);
    const lastIndex = (keyword: string): number => instructions.map((i) => i.getKeyword()).lastIndexOf(keyword);
    const env = envOf(instructions);

    test('stands on Node 24', () => {
      if (variant === 'cpu') {
        assert.match(image.baseImage, /^node:24(-|$)/);
      } else {
        assert.match(image.baseImage, /^nvidia\/cuda:[\d.]+-.*runtime-/, 'a CUDA runtime image, not a devel one');
        const node = copies(instructions).find((step) => step.sources.includes('/usr/local/bin/node'));
        assert.ok(node?.from, 'node is copied from another stage');
        assert.match(copySourceImage(node.from, variant), /^node:24(-|$)/, 'from a node:24 image');
        assert.equal(node.destination, '/usr/local/bin/node');
      }
      assert.doesNotMatch(image.baseImage, /devel|sdk/);
    });

    test('runs as a numeric non-root user, set after the last RUN', () => {
      const user = of(instructions, 'USER').at(-1);
      assert.ok(user, 'a USER instruction');
      const [uid, gid] = words(user)[0]!.split(':');
      assert.match(uid!, /^\d+$/, 'a numeric uid, which Kubernetes runAsNonRoot can verify');
      assert.notEqual(Number(uid), 0);
      if (gid !== undefined) assert.ok(/^\d+$/.test(gid) && Number(gid) !== 0, 'a numeric non-root gid');
      assert.ok(lastIndex('USER') > lastIndex('RUN'), 'no RUN after USER (it would run as that user, or the user would be changed back)');
      const created = runCommands(instructions).find((command) => /\buseradd\b/.test(command));
      assert.ok(created, 'the user is created');
      assert.match(created, new RegExp(`--uid ${uid}\\b`));
      assert.match(created, /--shell \/usr\/sbin\/nologin|--shell \/bin\/false/, 'without a login shell');
    });

    test('listens on 0.0.0.0 at PORT, which it exposes', () => {
      assert.equal(env.get('HOST'), '0.0.0.0');
      const port = env.get('PORT') ?? '3000';
      assert.deepEqual(of(instructions, 'EXPOSE').flatMap(words), [port]);
      assert.equal(env.get('NODE_ENV'), 'production');
    });

    test('DATA_DIR and MODELS_DIR are volumes owned by the user', () => {
      const volumes = of(instructions, 'VOLUME').flatMap((v) => (jsonForm(v).length > 0 ? jsonForm(v) : words(v)));
      const uid = words(of(instructions, 'USER').at(-1)!)[0]!.split(':')[0]!;
      for (const name of ['DATA_DIR', 'MODELS_DIR']) {
        const dir = env.get(name);
        assert.ok(dir && path.posix.isAbsolute(dir), `${name} is an absolute path`);
        assert.ok(volumes.includes(dir), `${name}=${dir} is a VOLUME`);
        const chown = runCommands(instructions).find((command) => /\bchown\b/.test(command) && command.split(/\s+/).includes(dir));
        assert.ok(chown, `${dir} is chowned`);
        assert.match(chown, new RegExp(`chown (-R )?${uid}(:\\d+)? `), `${dir} belongs to uid ${uid}`);
      }
      assert.ok(lastIndex('VOLUME') > lastIndex('RUN'), 'VOLUME after the last RUN: changes to a volume folder after it would be lost');
    });

    test('has a HEALTHCHECK on /healthz, without curl', () => {
      const checks = of(instructions, 'HEALTHCHECK');
      assert.equal(checks.length, 1);
      const check = checks[0]!;
      assert.ok(check instanceof Healthcheck);
      assert.equal(check.getSubcommand()?.getValue().toUpperCase(), 'CMD');
      const command = check.getTextContent().replace(/\\\r?\n/g, ' ');
      assert.match(command, /\/healthz/);
      assert.match(command, /127\.0\.0\.1|localhost/);
      assert.doesNotMatch(command, /\b(curl|wget)\b/, 'the slim images have neither');
      const exec = /\bCMD\s+(\[.*\])\s*$/s.exec(command);
      assert.ok(exec, 'exec form (no shell needed)');
      assert.equal((JSON.parse(exec[1]!) as string[])[0], 'node');
    });

    test('an init (tini) is PID 1 and starts node dist/src/server.js', () => {
      const entrypoint = jsonForm(of(instructions, 'ENTRYPOINT').at(-1)!);
      assert.match(entrypoint[0] ?? '', /\/(tini|dumb-init)$/, 'ENTRYPOINT in exec form runs an init');
      assert.ok(runCommands(instructions).some((command) => aptInstalls(command).includes(path.posix.basename(entrypoint[0]!))), 'the init is installed');
      assert.deepEqual(jsonForm(of(instructions, 'CMD').at(-1)!), ['node', 'dist/src/server.js']);
    });

    test('installs no compiler and no -dev package, and builds nothing', () => {
      const compiler = /^(gcc|g\+\+|cpp|clang|clang\+\+|llvm|cmake|make|ninja-build|build-essential|nvcc|binutils|libtool|autoconf)(-[\d.]+)?$|-dev$|^cuda-(nvcc|toolkit|compiler|minimal-build|libraries-dev)/;
      for (const command of runCommands(instructions)) {
        for (const pkg of aptInstalls(command)) assert.doesNotMatch(pkg, compiler, `the image installs ${pkg}`);
        const tokens = command.split(/\s+/);
        for (const tool of ['gcc', 'g++', 'cc', 'c++', 'clang', 'cmake', 'make', 'nvcc']) assert.ok(!tokens.includes(tool), `the image runs ${tool}: ${command}`);
        assert.doesNotMatch(command, /\bnpm (ci|install|i|run)\b|build-native|\btsc\b/, `the image builds: ${command}`);
      }
    });

    test('copies nothing but built files and what the service reads', () => {
      // What each kind of source may contribute. The build stage: production node_modules,
      // dist/, the addon alone (not its build folder), libtorch's libraries; Node's image: node;
      // the context: package.json, migrations/, openapi/openapi.json (read at run time).
      const fromBuild = new Set(['/src/node_modules', '/src/dist', '/src/native/build/sdxl_engine.node', '/opt/libtorch/lib']);
      const fromContext = new Set(['package.json', 'migrations/', 'openapi/openapi.json']);
      for (const step of copies(instructions)) {
        for (const source of step.sources) {
          if (step.from === undefined) {
            assert.ok(fromContext.has(source), `the image copies ${source} from the build context`);
          } else if (stageOf(step.from, variant).stages.some((s) => s.name === `build-${variant}`)) {
            assert.ok(fromBuild.has(source), `the image copies ${source} from ${step.from}`);
            assert.doesNotMatch(source, /\/src\/src\b|\/native\/(?!build\/sdxl_engine\.node$)/);
          } else {
            assert.match(copySourceImage(step.from, variant), /^node:24(-|$)/, `--from=${step.from}: the build stage or Node's image`);
            assert.equal(source, '/usr/local/bin/node', `the image copies ${source} from ${step.from}`);
          }
        }
      }
    });

    test('lays out the app folder the way the service finds its files', () => {
      // src/paths.ts: the project root holds package.json and migrations/ (and openapi/openapi.json);
      // src/engine/native.ts: the addon is native/build/sdxl_engine.node below package.json's folder.
      const app = workdirOf(instructions);
      const paths = new Set(copies(instructions).flatMap((step) => step.sources.map((source) => landed(step, source))));
      for (const needed of ['package.json', 'migrations', 'openapi/openapi.json', 'dist', 'node_modules', 'native/build/sdxl_engine.node']) {
        assert.ok(paths.has(path.posix.join(app, needed)), `${app}/${needed} is in the image`);
      }
      assert.ok(!paths.has(path.posix.join(app, 'src')), 'no TypeScript sources');
    });

    if (variant === 'cuda') {
      test("libtorch's libraries are on the loader's path", () => {
        assert.ok(copies(instructions).some((step) => step.sources.includes('/opt/libtorch/lib') && step.destination === '/opt/libtorch/lib'));
        assert.ok((env.get('LD_LIBRARY_PATH') ?? '').split(':').includes('/opt/libtorch/lib'));
      });
    }
  });

  describe(`the ${variant} build`, () => {
    const build = stageOf('build', variant);
    const commands = runCommands(build.instructions);
    const indexOfRun = (pattern: RegExp): number => build.instructions.findIndex((i) => i.getKeyword() === 'RUN' && pattern.test(words(i).join(' ')));
    const indexOfCopy = (source: string): number =>
      build.instructions.findIndex((i) => i instanceof Copy && !i.getFromFlag() && words(i).slice(0, -1).includes(source));

    test('runs npm ci, npm run build, the addon build (--addon-only), then drops devDependencies', () => {
      assert.ok(commands.some((c) => /\bnpm ci\b(?!.*--omit)/.test(c)), 'npm ci');
      assert.ok(commands.some((c) => /\bnpm run build\b/.test(c)), 'npm run build');
      assert.ok(commands.some((c) => /\bnode scripts\/build-native\.mjs --addon-only\b/.test(c)), 'the addon, as `npm start` builds it');
      assert.ok(commands.some((c) => /\bnpm prune --omit=dev\b|\bnpm ci --omit=dev\b/.test(c)), 'production node_modules');
      assert.equal(build.instructions.find((i) => i.getKeyword() === 'WORKDIR') && workdirOf(build.instructions), '/src');
    });

    test('is cache-friendly: the lockfile and npm ci before the sources, the addon before src/', () => {
      const npmCi = indexOfRun(/\bnpm ci\b/);
      assert.ok(indexOfCopy('package-lock.json') >= 0 && indexOfCopy('package-lock.json') < npmCi);
      assert.ok(npmCi < indexOfCopy('native/') && npmCi < indexOfCopy('src/'));
      assert.ok(indexOfRun(/build-native\.mjs/) < indexOfCopy('src/'), 'a TypeScript change does not rebuild the addon');
    });

    if (variant === 'cpu') {
      test("installs exactly CI's packages (README's test command, less its test-only tools)", () => {
        const readme = aptInstalls(readmeTestCommand()).filter((pkg) => !TEST_ONLY_PACKAGES.has(pkg));
        const installed = commands.flatMap(aptInstalls);
        assert.ok(readme.length > 0, "README's test command installs packages");
        assert.deepEqual([...installed].sort(), [...readme].sort());
        assert.match(build.baseImage, /^node:24-bookworm$/, "Debian bookworm: libtorch-dev 1.13, as in CI");
      });

      test('points LIBTORCH_DIR where .ci/run does', () => {
        const ciRun = fs.readFileSync(path.join(root, '.ci/run'), 'utf8');
        const ci = /export LIBTORCH_DIR=(\S+)/.exec(ciRun)?.[1];
        assert.ok(ci);
        assert.equal(envOf(build.instructions).get('LIBTORCH_DIR'), ci);
      });
    } else {
      test('compiles with nvcc against a PyTorch 2.x CUDA libtorch, on the runtime image\'s CUDA', () => {
        assert.match(build.baseImage, /^nvidia\/cuda:[\d.]+-.*devel-/, 'a CUDA devel image (nvcc, headers)');
        const runtimeBase = chain(stages.at(-1)!, variant).baseImage;
        assert.equal(runtimeBase, build.baseImage.replace('-devel-', '-runtime-'), 'the same CUDA version and OS');
        const args = new Map<string, string>();
        for (const arg of of(build.instructions, 'ARG')) {
          if (arg instanceof PropertyInstruction) for (const p of arg.getProperties()) args.set(p.getName(), unquote(p.getValue() ?? ''));
        }
        assert.match(args.get('LIBTORCH_URL') ?? '', /^https:\/\/download\.pytorch\.org\/libtorch\/cu12\d\/libtorch-(cxx11-abi-)?shared-with-deps-2\.\d+\.\d+%2Bcu12\d\.zip$/);
        assert.match(args.get('TORCH_CUDA_ARCH_LIST') ?? '', /^\d\.\d(;\d\.\d)*$/);
        const cuda = /cu(\d+)(\d)\//.exec(args.get('LIBTORCH_URL')!)!;
        const [major, minor] = expand('${CUDA_VERSION}', variant).split('.').map(Number);
        assert.ok(Number(cuda[1]) === major && Number(cuda[2]) <= minor!, "libtorch's CUDA is not newer than the image's");
        assert.equal(envOf(build.instructions).get('LIBTORCH_DIR'), '/opt/libtorch');
        assert.ok(commands.some((c) => c.includes('/opt/libtorch/share/cmake/Torch/TorchConfig.cmake')), 'the unpacked zip is checked');
        const node = copies(build.instructions).filter((step) => step.from && /^node:24(-|$)/.test(copySourceImage(step.from, variant)));
        const copied = node.flatMap((step) => step.sources);
        assert.ok(copied.includes('/usr/local/bin/node') && copied.includes('/usr/local/include/node'), "Node 24 and its headers (build-native.mjs looks beside the binary)");
      });
    }
  });
}

describe('the build context', () => {
  test('.dockerignore leaves out local builds, data and the repository', () => {
    for (const out of ['node_modules', 'node_modules/fastify/package.json', 'dist', 'dist/src/server.js', 'native/build', 'native/build/CMakeCache.txt', 'native/build-debug/x.o', 'data', 'data/models/x.safetensors', '.git', '.git/HEAD', '.device', '.whl', 'test/readme.test.ts', '.env', 'src/node_modules/x.js']) {
      assert.ok(excluded(out), `.dockerignore leaves out ${out}`);
    }
    for (const kept of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src/server.ts', 'native/CMakeLists.txt', 'native/src/addon/addon.cpp', 'scripts/build-native.mjs', 'migrations/001_init.sql', 'openapi/openapi.json']) {
      assert.ok(!excluded(kept), `.dockerignore keeps ${kept}`);
    }
  });

  test('every file COPY takes from the context exists and is sent', () => {
    const sources = new Set(
      VARIANTS.flatMap((variant) => stages.flatMap((stage) => copies(stage.instructions).filter((step) => step.from === undefined).flatMap((step) => step.sources))).map((s) => expand(s, 'cpu')),
    );
    assert.ok(sources.size > 0);
    for (const source of sources) {
      assert.ok(!path.posix.isAbsolute(source) && !source.split('/').includes('..'), `${source} is inside the context`);
      assert.ok(fs.existsSync(path.join(root, source)), `${source} exists`);
      assert.ok(!excluded(source), `.dockerignore leaves out ${source}`);
    }
  });

  test('the tracked files under each copied folder are all sent', (t) => {
    let tracked: string[];
    try {
      tracked = execFileSync('git', ['ls-files', '-z'], { cwd: root, encoding: 'utf8' }).split('\0').filter(Boolean);
    } catch {
      t.skip('git ls-files is not available');
      return;
    }
    const folders = new Set(stages.flatMap((stage) => copies(stage.instructions).filter((step) => step.from === undefined).flatMap((step) => step.sources)).filter((s) => s.endsWith('/')));
    assert.ok(folders.has('src/') && folders.has('native/'));
    for (const folder of folders) {
      const files = tracked.filter((file) => file.startsWith(folder));
      assert.ok(files.length > 0, `git tracks files in ${folder}`);
      for (const file of files) assert.ok(!excluded(file), `.dockerignore leaves out ${file}, which the build copies`);
    }
  });
});
