// npm run verify:metrics -- [--fixtures <dir>] [--device cpu|cuda|cuda:N]
//
// A self-test of the quality metrics on this build and device: scores the fixtures' test
// images with their tiny random-weight networks (../shared/fixtures/metrics, README.md
// there) through the engine's evaluate(), as a run or a generation does, and compares with
// the reference implementations' goldens: torchmetrics' CLIPScore, open_clip's HPS-style
// score, lpips' distance and torchmetrics' FID. Prints one row per value, then PASS or
// FAIL; exits 1 on any failure.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

import sharp from 'sharp';

import { evaluate, type EvaluateImage, type MetricName } from '../engine/index.js';

const USAGE = `Usage: npm run verify:metrics -- [--fixtures <dir>] [--device cpu|cuda|cuda:N]

  --fixtures  the metric fixtures: golden.json, images/, inception/, lpips/, clip-tiny/, openclip-tiny/
              (default ../shared/fixtures/metrics)`;

/** The operator's folder names, and the fixture folders they are links to. */
const NETWORK_FOLDERS: Array<[string, string]> = [['inception', 'inception'], ['lpips', 'lpips'], ['clip', 'clip-tiny'], ['hps', 'openclip-tiny']];

interface Check {
  name: string;
  value: number;
  golden: number;
  tolerance: number; // absolute
}

interface Goldens {
  values: Record<string, { value: unknown }>;
  tensors: Record<string, { stats: { mean: number; min: number; max: number } }>;
}

async function image(dir: string, name: string, caption = ''): Promise<EvaluateImage> {
  const { data, info } = await sharp(path.join(dir, 'images', `${name}.png`)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { name, width: info.width, height: info.height, rgb: data, caption };
}

async function scores(modelsDir: string, device: string, metrics: MetricName[], images: EvaluateImage[], references: EvaluateImage[] = []) {
  const result = await evaluate({ modelsDir, device, metrics, images, references, seed: 0 }).promise;
  for (const metric of metrics) {
    if (!(metric in result.values)) throw new Error(`${metric} was not computed: ${result.unavailable[metric] ?? 'no reason given'}`);
  }
  return result.values;
}

async function run(fixtures: string, device: string): Promise<Check[]> {
  const goldens = JSON.parse(await fs.readFile(path.join(fixtures, 'golden.json'), 'utf8')) as Goldens;
  const value = (name: string) => goldens.values[name]!.value as number;
  const prompts = goldens.values['clip.prompts']!.value as string[];
  const modelsDir = await fs.mkdtemp(path.join(os.tmpdir(), 'verify-metrics-'));
  try {
    for (const [link, target] of NETWORK_FOLDERS) await fs.symlink(path.resolve(fixtures, target), path.join(modelsDir, link));
    const a = await Promise.all([...Array(8).keys()].map((i) => image(fixtures, `A_${i}`)));
    const b = await Promise.all([...Array(8).keys()].map((i) => image(fixtures, `B_${i}`)));
    const pairs = prompts.map((prompt, i) => ({ ...a[i]!, caption: prompt }));
    const prompted = await scores(modelsDir, device, ['clip_t', 'hps'], pairs);
    // One pair with one prompt: (A_1, B_1) is LPIPS' pair 1, the smallest of the four distances.
    const lpips = await scores(modelsDir, device, ['lpips'], [{ ...a[1]!, caption: 'p' }, { ...b[1]!, caption: 'p' }]);
    const fid = await scores(modelsDir, device, ['fid'], b, a);
    return [
      { name: 'clip_t (torchmetrics CLIPScore, 4 pairs)', value: prompted.clip_t!, golden: value('clip.score.torchmetrics_4pairs'), tolerance: 1e-3 },
      { name: 'hps (open_clip, mean of 4 pairs)', value: prompted.hps!, golden: goldens.tensors['openclip.hps_score']!.stats.mean, tolerance: 1e-5 },
      { name: 'lpips (pair A_1, B_1)', value: lpips.lpips!, golden: goldens.tensors['lpips.distance']!.stats.min, tolerance: 1e-5 },
      { name: 'fid (torchmetrics, B against A)', value: fid.fid!, golden: value('inception.fid.value'), tolerance: 1e-4 * value('inception.fid.value') },
    ];
  } finally {
    await fs.rm(modelsDir, { recursive: true, force: true });
  }
}

async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { fixtures: { type: 'string' }, device: { type: 'string' }, help: { type: 'boolean', short: 'h' } } }));
  } catch (error) {
    process.stderr.write(`verify:metrics: ${(error as Error).message}\n${USAGE}\n`);
    return 1;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const checks = await run(values.fixtures ?? '../shared/fixtures/metrics', values.device ?? 'cpu');
  let failed = 0;
  for (const check of checks) {
    const gap = Math.abs(check.value - check.golden);
    const pass = gap <= check.tolerance;
    if (!pass) failed += 1;
    process.stdout.write(`${check.name.padEnd(42)} ${check.value.toPrecision(10).padStart(16)}  golden ${check.golden.toPrecision(10).padStart(16)}` +
      `  |diff| ${gap.toExponential(2)} <= ${check.tolerance.toExponential(1)}  ${pass ? 'PASS' : 'FAIL'}\n`);
  }
  process.stdout.write(`\n${checks.length - failed} passed, ${failed} failed: ${failed === 0 ? 'PASS' : 'FAIL'}\n`);
  return failed === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (error: unknown) => {
  process.stderr.write(`verify:metrics: ${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
