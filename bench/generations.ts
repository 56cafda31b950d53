// npm run bench:generations: text-to-image on the engine, as the generation worker runs it
// (one resident model, LoRAs applied unmerged per call, cached by sha256).
//
// Loads the model once (a built-in demo model, --demo sdxl-tiny-demo by default or
// sd15-tiny-demo, unless --model names a diffusers folder of any family) and measures,
// each over --repeats calls after a warm-up:
//   1. seconds per image: --steps steps with classifier-free guidance, no LoRA, per sampler;
//   2. LoRA swap, on one-step calls (so it is not lost in the noise of many steps): calls
//      with LoRA A after calls with A (no swap), calls alternating A and B (a swap each
//      time, both cached), and the first call with a new LoRA (parsed from its file);
//   3. generations per minute with 4 LoRAs taken in turn.
// LoRAs are rank --rank peft files with random weights on every attention projection of
// the UNet, written from the model's own weight shapes.
// Options: --model DIR, --demo ID, --device cpu|cuda, --dtype float32|bfloat16|float16, --size PX
// (default: the model's sample size x 8), --steps N (30), --guidance G (5; SD 1.5's usual 7.5),
// --repeats N (5), --rank N (16).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { inspectSafetensors, loadModel, type Model } from '../src/engine/index.js';
import { demoModel, ensureDemoModel, SDXL_DEMO } from '../src/models/demo-model.js';
import { writeSafetensors } from '../test/support/safetensors.js';

const { values: args } = parseArgs({
  options: {
    model: { type: 'string' },
    demo: { type: 'string', default: SDXL_DEMO.id },
    device: { type: 'string', default: 'cpu' },
    dtype: { type: 'string', default: 'float32' },
    size: { type: 'string' },
    steps: { type: 'string', default: '30' },
    guidance: { type: 'string', default: '5' },
    repeats: { type: 'string', default: '5' },
    rank: { type: 'string', default: '16' },
  },
});
const STEPS = Number(args.steps);
const GUIDANCE = Number(args.guidance);
const REPEATS = Number(args.repeats);
const RANK = Number(args.rank);
const PROJECTIONS = /^(.*attn[12]\.(?:to_q|to_k|to_v|to_out\.0))\.weight$/;

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-generations-'));
process.on('exit', () => fs.rmSync(scratch, { recursive: true, force: true }));

/** A peft LoRA file with random weights for every UNet attention projection of the model. */
async function randomLora(modelDir: string, name: string): Promise<string> {
  const unetDir = path.join(modelDir, 'unet');
  const weights = fs.readdirSync(unetDir).find((file) => file.endsWith('.safetensors'))!;
  const { tensors } = await inspectSafetensors(path.join(unetDir, weights));
  const lora = new Map<string, { dtype: string; shape: number[]; data: Buffer }>();
  const add = (key: string, shape: number[]) => {
    const values = new Float32Array(shape[0]! * shape[1]!);
    const random = randomBytes(values.length);
    for (let i = 0; i < values.length; i++) values[i] = (random[i]! / 255 - 0.5) * 0.02;
    lora.set(key, { dtype: 'F32', shape, data: Buffer.from(values.buffer) });
  };
  for (const [key, tensor] of Object.entries(tensors)) {
    const module = PROJECTIONS.exec(key)?.[1];
    if (module === undefined) continue;
    const [out, inFeatures] = tensor.shape as [number, number];
    add(`unet.${module}.lora_A.weight`, [RANK, inFeatures]);
    add(`unet.${module}.lora_B.weight`, [out, RANK]);
  }
  const file = path.join(scratch, `${name}.safetensors`);
  writeSafetensors(file, lora, { format: 'pt', lora_adapter_metadata: JSON.stringify({ 'unet.r': RANK, 'unet.lora_alpha': RANK }) });
  return file;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function timed(model: Model, options: Parameters<Model['generate']>[0]): Promise<number> {
  const start = performance.now();
  await model.generate(options).promise;
  return (performance.now() - start) / 1000;
}

const demo = demoModel(args.demo);
if (args.model === undefined && demo === undefined) throw new Error(`--demo ${args.demo}: no such built-in demo model`);
const modelDir = args.model ?? await ensureDemoModel(path.join(scratch, 'models'), demo);
const unetConfig = JSON.parse(fs.readFileSync(path.join(modelDir, 'unet', 'config.json'), 'utf8')) as { sample_size: number };
const size = Number(args.size ?? unetConfig.sample_size * 8);
const loadStart = performance.now();
const model = await loadModel({ modelPath: modelDir, device: args.device, dtype: args.dtype });
const loadSeconds = (performance.now() - loadStart) / 1000;
const base = { prompt: 'a photo of a dog on a beach, golden hour', negativePrompt: 'blurry', width: size, height: size, steps: STEPS, guidanceScale: GUIDANCE, seed: 1 };
console.log(`model ${path.basename(modelDir)} (${model.describe().family}) on ${args.device} ${args.dtype}, ${size}x${size}, ${STEPS} steps, CFG ${GUIDANCE}; load ${loadSeconds.toFixed(2)} s; ${os.cpus().length} CPUs`);

await timed(model, base); // warm-up
for (const sampler of ['euler', 'euler_a', 'dpmpp_2m_karras'] as const) {
  const seconds: number[] = [];
  for (let i = 0; i < REPEATS; i++) seconds.push(await timed(model, { ...base, sampler }));
  console.log(`seconds per image, ${sampler}: median ${median(seconds).toFixed(3)} (min ${Math.min(...seconds).toFixed(3)}, max ${Math.max(...seconds).toFixed(3)})`);
}

const loras = [];
for (const name of ['a', 'b', 'c', 'd']) {
  const file = await randomLora(modelDir, name);
  loras.push({ path: file, scale: 0.8, sha256: name.repeat(64) });
}
// One-step calls, so what a LoRA adds is not lost in the noise of thirty steps.
const short = { ...base, steps: 1 };
const none: number[] = [];
const same: number[] = [];
const alternating: number[] = [];
await timed(model, { ...short, loras: [loras[0]!] });
for (let i = 0; i < 4 * REPEATS; i++) {
  none.push(await timed(model, short));
  same.push(await timed(model, { ...short, loras: [loras[0]!] }));
}
await timed(model, { ...short, loras: [loras[1]!] });
for (let i = 0; i < 4 * REPEATS; i++) alternating.push(await timed(model, { ...short, loras: [loras[i % 2]!] }));
const firstUse = await timed(model, { ...short, loras: [loras[2]!] });
const ms = (seconds: number) => `${(seconds * 1000).toFixed(1)} ms`;
console.log(`LoRA rank ${RANK}, ${fs.statSync(loras[0]!.path).size} bytes each; one-step calls: without LoRA ${ms(median(none))}`);
console.log(`  applying a LoRA (unmerged, the same one again): +${ms(median(same) - median(none))} per call (a step's share of it: the extra low-rank products)`);
console.log(`  swap: calls alternating A and B (both cached) take ${ms(median(alternating) - median(same))} more than calls repeating A`);
console.log(`  first use of a LoRA (read, matched, converted, cached): ${ms(firstUse - median(same))} more than a cached one`);
const roundStart = performance.now();
const ROUND = 4 * REPEATS;
for (let i = 0; i < ROUND; i++) await model.generate({ ...base, loras: [loras[i % 4]!] }).promise;
const perMinute = (ROUND / ((performance.now() - roundStart) / 1000)) * 60;
console.log(`generations per minute, 4 LoRAs in turn: ${perMinute.toFixed(1)}`);
console.log(`LoRA cache: ${JSON.stringify(model.loraCacheStats())}`);
model.dispose();
