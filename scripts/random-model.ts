// npm run random-model -- --family sd15|sdxl --out DIR [--seed N]
//
// Writes a full-size SD 1.5 or SDXL-base diffusers folder with random weights, for the
// speed and memory benchmarks on a GPU (bench:train --model, bench:generations --model)
// where no published weights can be downloaded. The component configs are the published
// ones of ../shared/fixtures/{sd15,sdxl}-base-keys/, the tokenizers the real CLIP
// vocabulary of ../shared/fixtures/clip-tokenizer/, the scheduler config and
// model_index.json the published files' keys; the engine's writeRandomWeights fills in
// float32 weights (about 4.3 GB for SD 1.5, 14 GB for SDXL-base).
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { writeRandomWeights } from '../src/engine/index.js';

const FIXTURES = path.resolve(import.meta.dirname, '..', '..', 'shared', 'fixtures');
const json = (value: unknown) => JSON.stringify(value, null, 2) + '\n';

const SCHEDULER_KEYS = { beta_end: 0.012, beta_schedule: 'scaled_linear', beta_start: 0.00085, num_train_timesteps: 1000, steps_offset: 1 };
const FAMILIES = {
  sd15: {
    keys: 'sd15-base-keys',
    pipeline: 'StableDiffusionPipeline',
    encoders: [['text_encoder', 'tokenizer', '<|endoftext|>']],
    scheduler: { _class_name: 'PNDMScheduler', ...SCHEDULER_KEYS, set_alpha_to_one: false, skip_prk_steps: true, clip_sample: false, trained_betas: null },
  },
  sdxl: {
    keys: 'sdxl-base-keys',
    pipeline: 'StableDiffusionXLPipeline',
    encoders: [['text_encoder', 'tokenizer', '<|endoftext|>'], ['text_encoder_2', 'tokenizer_2', '!']],
    scheduler: { _class_name: 'EulerDiscreteScheduler', ...SCHEDULER_KEYS, prediction_type: 'epsilon', timestep_spacing: 'leading' },
  },
} as const;

const { values: args } = parseArgs({ options: { family: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string', default: '0' } } });
const family = FAMILIES[args.family as keyof typeof FAMILIES];
if (family === undefined || args.out === undefined) {
  console.error('Usage: npm run random-model -- --family sd15|sdxl --out DIR [--seed N]');
  process.exit(1);
}
if (fs.existsSync(args.out)) {
  console.error(`random-model: ${args.out} exists; name a new folder`);
  process.exit(1);
}

const write = (relative: string, content: string) => {
  fs.mkdirSync(path.dirname(path.join(args.out!, relative)), { recursive: true });
  fs.writeFileSync(path.join(args.out!, relative), content);
};
const config = (name: string) => fs.readFileSync(path.join(FIXTURES, family.keys, `${name}_config.json`), 'utf8');
const index: Record<string, unknown> = { _class_name: family.pipeline, _diffusers_version: '0.40.0', scheduler: ['diffusers', family.scheduler._class_name] };
write('unet/config.json', config('unet'));
write('vae/config.json', config('vae'));
index.unet = ['diffusers', 'UNet2DConditionModel'];
index.vae = ['diffusers', 'AutoencoderKL'];
for (const [encoder, tokenizer, pad] of family.encoders) {
  write(`${encoder}/config.json`, config(encoder));
  for (const file of ['vocab.json', 'merges.txt']) write(`${tokenizer}/${file}`, fs.readFileSync(path.join(FIXTURES, 'clip-tokenizer', file), 'utf8'));
  write(`${tokenizer}/tokenizer_config.json`, json({
    bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', model_max_length: 77, pad_token: pad, tokenizer_class: 'CLIPTokenizer', unk_token: '<|endoftext|>',
  }));
  index[encoder] = ['transformers', encoder === 'text_encoder_2' ? 'CLIPTextModelWithProjection' : 'CLIPTextModel'];
  index[tokenizer] = ['transformers', 'CLIPTokenizer'];
}
write('scheduler/scheduler_config.json', json(family.scheduler));
write('model_index.json', json(index));
const started = performance.now();
await writeRandomWeights({ modelDir: args.out, seed: Number(args.seed) });
console.log(`random-model: ${args.family} written to ${args.out} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
