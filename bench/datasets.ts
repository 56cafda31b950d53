// npm run bench:datasets: the trainer over a small and a large dataset, on the CPU, with the built-in
// demo model (sdxl-tiny-demo), through the engine's train() with each image given as the training
// worker gives it: a key, its size and a reader of its bytes (noise PNGs on disk here).
//
// For --small and --large images it runs, each size in a child process of its own (so their peak
// RSS stay apart):
//   1. a first run on an empty cache: the caching phase's throughput (images/s: read, decoded,
//      resized, VAE-encoded and written) and the training steps/s;
//   2. a second run on the same cache: the seconds from train() to the first training step (no
//      encoding) and the steps/s again;
// then prints each size's figures and the process's peak RSS (getrusage), as a table and JSON.
// Options (all optional):
//   --small N        images of the small set (default 10)
//   --large N        images of the large set (default 10000)
//   --steps N        max_steps of each run, batch 1 (default 200)
//   --resolution PX  training resolution and image side (default 128)
import { fork } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { train, type Progress, type TrainImageSource } from '../src/engine/index.js';
import { ensureDemoModel } from '../src/models/demo-model.js';
import { png } from '../test/support/images.js';

const { values: args } = parseArgs({
  options: {
    small: { type: 'string', default: '10' },
    large: { type: 'string', default: '10000' },
    steps: { type: 'string', default: '200' },
    resolution: { type: 'string', default: '128' },
    child: { type: 'string' }, // internal: the image count this child process measures
  },
});
const steps = Number(args.steps);
const resolution = Number(args.resolution);

interface RunFigures {
  /** Seconds from train() to the first training step. */
  secondsToTraining: number;
  /** Images encoded per second in the caching phase (0 when nothing was encoded). */
  cachingImagesPerSecond: number;
  stepsPerSecond: number;
  encoded: number;
  reused: number;
}

interface SizeFigures {
  images: number;
  cold: RunFigures;
  warm: RunFigures;
  peakRssMiB: number;
}

/** One run of `steps` steps; figures from its progress reports' arrival times. */
async function timedRun(modelPath: string, images: TrainImageSource[], cacheDir: string, outputDir: string): Promise<RunFigures> {
  const started = performance.now();
  let cachingFrom: number | undefined;
  let cachingTo: number | undefined;
  let firstStep: { at: number; step: number } | undefined;
  let lastStep: { at: number; step: number } | undefined;
  const job = train({
    modelPath, images, cacheDir, outputDir, resolution, minBucketSide: Math.min(256, resolution),
    maxSteps: steps, rank: 4, alpha: 4, optimizer: 'adamw8bit', seed: 1, validationLossSamples: 0,
  }, (report: Progress) => {
    const now = performance.now();
    if (report.phase === 'caching') {
      cachingFrom ??= now;
      cachingTo = now;
    }
    if (report.phase === 'training') {
      firstStep ??= { at: now, step: report.step };
      lastStep = { at: now, step: report.step };
    }
  });
  const result = await job.promise;
  if (result.status !== 'completed' || firstStep === undefined || lastStep === undefined) throw new Error(`the run ended ${result.status}`);
  const encoded = result.metrics.cache_latents_encoded ?? 0;
  const cachingSeconds = ((cachingTo ?? 0) - (cachingFrom ?? 0)) / 1000;
  return {
    secondsToTraining: (firstStep.at - started) / 1000,
    cachingImagesPerSecond: encoded > 0 && cachingSeconds > 0 ? encoded / cachingSeconds : 0,
    stepsPerSecond: (lastStep.step - firstStep.step) / ((lastStep.at - firstStep.at) / 1000),
    encoded,
    reused: result.metrics.cache_latents_reused ?? 0,
  };
}

/** Child: writes `count` PNGs, runs cold then warm, reports its figures to the parent. */
async function measure(count: number): Promise<SizeFigures> {
  const scratch = await mkdtemp(path.join(tmpdir(), 'sdxl-bench-datasets-'));
  try {
    const modelPath = await ensureDemoModel(path.join(scratch, 'models'));
    const images: TrainImageSource[] = [];
    for (let i = 0; i < count; i++) {
      const file = path.join(scratch, `img${i}.png`);
      await writeFile(file, await png({ width: resolution, height: resolution, seed: i + 1 }));
      images.push({ name: `img${i}.png`, caption: `a painting in sks style, number ${i % 50}`, key: `bench-${count}-${i}`,
        width: resolution, height: resolution, read: () => readFile(file) });
    }
    const cacheDir = path.join(scratch, 'cache');
    const cold = await timedRun(modelPath, images, cacheDir, path.join(scratch, 'cold'));
    const warm = await timedRun(modelPath, images, cacheDir, path.join(scratch, 'warm'));
    return { images: count, cold, warm, peakRssMiB: process.resourceUsage().maxRSS / 1024 };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

function inChild(count: number): Promise<SizeFigures> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), [...process.argv.slice(2), '--child', String(count)], { execArgv: ['--import', 'tsx'] });
    child.on('message', (figures) => resolve(figures as SizeFigures));
    child.on('exit', (code) => (code === 0 ? undefined : reject(new Error(`the ${count}-image child exited ${code}`))));
  });
}

if (args.child !== undefined) {
  process.send!(await measure(Number(args.child)));
  process.exit(0);
}

const sizes = [Number(args.small), Number(args.large)];
const figures: SizeFigures[] = [];
for (const count of sizes) figures.push(await inChild(count));
console.log(`bench:datasets on ${availableParallelism()} x ${cpus()[0]?.model ?? 'CPU'}: sdxl-tiny-demo, ${resolution} px, ${steps} steps, batch 1`);
console.log('images | caching img/s | cold: s to step 1 | cold steps/s | warm: s to step 1 | warm steps/s | peak RSS');
for (const f of figures) {
  console.log(`${f.images} | ${f.cold.cachingImagesPerSecond.toFixed(0)} | ${f.cold.secondsToTraining.toFixed(1)} | ` +
    `${f.cold.stepsPerSecond.toFixed(1)} | ${f.warm.secondsToTraining.toFixed(1)} | ${f.warm.stepsPerSecond.toFixed(1)} | ${f.peakRssMiB.toFixed(0)} MiB`);
}
console.log(JSON.stringify({ bench: 'datasets', resolution, steps, figures }));
