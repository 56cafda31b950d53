// The built-in demo models: `sdxl-tiny-demo` and `sd15-tiny-demo`, diffusers folders with
// the real structure of SDXL-base and of Stable Diffusion 1.5 at tiny widths, written by
// the service itself on first use, so that upload, caption, train and generate run on a
// CPU in seconds on a fresh machine. Their weights are random (a fixed seed, so the same
// bytes every time): they make noise, and say so.
//
// The configs are diffusers' and transformers' own formats. The SDXL demo has two CLIP
// text encoders (the second projected), a three-level UNet with text-time conditioning
// and a four-level VAE; the SD 1.5 demo one CLIP text encoder and SD 1.5's four-level
// UNet (cross-attention in the first three, 1x1-convolution projections, heads given as
// a count), so that its LoRA module names are full-size SD 1.5's. Their tokenizers use a
// byte-level CLIP vocabulary: the 256 byte symbols, their `</w>` forms and the two special
// tokens, with no merges, so any text tokenizes without a downloaded vocabulary.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { writeRandomWeights } from '../engine/index.js';

export interface DemoModel {
  id: string;
  /** Seed of its random weights. */
  seed: number;
  description: string;
  /** Every file of the folder except the weights, by path relative to it. */
  files(): Record<string, string>;
}

const START_TOKEN = '<|startoftext|>';
const END_TOKEN = '<|endoftext|>';

/** GPT-2's byte-to-symbol table as CLIP orders it: printable bytes first, then the rest from U+0100. */
function byteSymbols(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const symbols = printable.map((b) => String.fromCodePoint(b));
  let next = 0;
  for (let b = 0; b < 256; b++) if (!printable.includes(b)) symbols.push(String.fromCodePoint(256 + next++));
  return symbols;
}

/** vocab.json: byte symbols (ids 0-255), their word-final forms (256-511), start (512) and end (513). */
export function byteLevelVocabulary(): Record<string, number> {
  const symbols = byteSymbols();
  const vocabulary: Record<string, number> = {};
  for (const symbol of symbols) vocabulary[symbol] = Object.keys(vocabulary).length;
  for (const symbol of symbols) vocabulary[`${symbol}</w>`] = Object.keys(vocabulary).length;
  vocabulary[START_TOKEN] = Object.keys(vocabulary).length;
  vocabulary[END_TOKEN] = Object.keys(vocabulary).length;
  return vocabulary;
}

const VOCABULARY_SIZE = 514;
const START_ID = 512;
const END_ID = 513;

function textEncoderConfig(architecture: 'CLIPTextModel' | 'CLIPTextModelWithProjection', sizes: {
  hidden: number; intermediate: number; heads: number; projection: number; act: string; pad: number;
}) {
  return {
    architectures: [architecture],
    attention_dropout: 0.0,
    bos_token_id: START_ID,
    dtype: 'float32',
    eos_token_id: END_ID,
    hidden_act: sizes.act,
    hidden_size: sizes.hidden,
    initializer_factor: 1.0,
    initializer_range: 0.02,
    intermediate_size: sizes.intermediate,
    layer_norm_eps: 1e-5,
    max_position_embeddings: 77,
    model_type: 'clip_text_model',
    num_attention_heads: sizes.heads,
    num_hidden_layers: 3,
    pad_token_id: sizes.pad,
    projection_dim: sizes.projection,
    vocab_size: VOCABULARY_SIZE,
  };
}

function tokenizerConfig(padToken: string) {
  return {
    bos_token: START_TOKEN,
    eos_token: END_TOKEN,
    model_max_length: 77,
    pad_token: padToken,
    tokenizer_class: 'CLIPTokenizer',
    unk_token: END_TOKEN,
  };
}

const json = (value: unknown) => JSON.stringify(value, null, 2) + '\n';

/** A tokenizer folder: the byte-level vocabulary, no merges, padded with `padToken`. */
function tokenizerFiles(folder: string, padToken: string): Record<string, string> {
  return {
    [`${folder}/vocab.json`]: json(byteLevelVocabulary()),
    [`${folder}/merges.txt`]: '#version: 0.2\n',
    [`${folder}/tokenizer_config.json`]: json(tokenizerConfig(padToken)),
  };
}

/** A four-level VAE as SDXL's and SD 1.5's, at tiny widths; they differ in the latents' scaling factor. */
function vaeConfig(scalingFactor: number) {
  return {
    _class_name: 'AutoencoderKL',
    _diffusers_version: '0.40.0',
    act_fn: 'silu',
    block_out_channels: [32, 64, 64, 64],
    down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
    force_upcast: true,
    in_channels: 3,
    latent_channels: 4,
    layers_per_block: 2,
    norm_num_groups: 32,
    out_channels: 3,
    sample_size: 128,
    scaling_factor: scalingFactor,
    up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
  };
}

function sdxlDemoFiles(): Record<string, string> {
  return {
    'model_index.json': json({
      _class_name: 'StableDiffusionXLPipeline',
      _diffusers_version: '0.40.0',
      force_zeros_for_empty_prompt: true,
      scheduler: ['diffusers', 'EulerDiscreteScheduler'],
      text_encoder: ['transformers', 'CLIPTextModel'],
      text_encoder_2: ['transformers', 'CLIPTextModelWithProjection'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      tokenizer_2: ['transformers', 'CLIPTokenizer'],
      unet: ['diffusers', 'UNet2DConditionModel'],
      vae: ['diffusers', 'AutoencoderKL'],
    }),
    'scheduler/scheduler_config.json': json({
      _class_name: 'EulerDiscreteScheduler',
      beta_end: 0.012,
      beta_schedule: 'scaled_linear',
      beta_start: 0.00085,
      num_train_timesteps: 1000,
      prediction_type: 'epsilon',
      steps_offset: 1,
      timestep_spacing: 'leading',
      use_karras_sigmas: false,
    }),
    'text_encoder/config.json': json(
      textEncoderConfig('CLIPTextModel', { hidden: 24, intermediate: 48, heads: 2, projection: 24, act: 'quick_gelu', pad: END_ID }),
    ),
    'text_encoder_2/config.json': json(
      textEncoderConfig('CLIPTextModelWithProjection', { hidden: 40, intermediate: 80, heads: 4, projection: 32, act: 'gelu', pad: 0 }),
    ),
    ...tokenizerFiles('tokenizer', END_TOKEN),
    ...tokenizerFiles('tokenizer_2', '!'),
    'unet/config.json': json({
      _class_name: 'UNet2DConditionModel',
      _diffusers_version: '0.40.0',
      act_fn: 'silu',
      addition_embed_type: 'text_time',
      addition_time_embed_dim: 8,
      attention_head_dim: [2, 4, 4],
      block_out_channels: [32, 64, 64],
      cross_attention_dim: 64, // text_encoder 24 + text_encoder_2 40
      down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
      flip_sin_to_cos: true,
      freq_shift: 0,
      in_channels: 4,
      layers_per_block: 2,
      mid_block_type: 'UNetMidBlock2DCrossAttn',
      norm_eps: 1e-5,
      norm_num_groups: 32,
      out_channels: 4,
      projection_class_embeddings_input_dim: 80, // 6 time ids x 8 + text_encoder_2's projection 32
      sample_size: 16, // latents of 128 x 128 images
      transformer_layers_per_block: [1, 2, 3],
      up_block_types: ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'],
      upcast_attention: false,
      use_linear_projection: true,
    }),
    'vae/config.json': json(vaeConfig(0.13025)),
  };
}

/** SD 1.5's structure: the published stable-diffusion-v1-5 model_index.json and scheduler config, tiny widths. */
function sd15DemoFiles(): Record<string, string> {
  return {
    'model_index.json': json({
      _class_name: 'StableDiffusionPipeline',
      _diffusers_version: '0.40.0',
      feature_extractor: [null, null],
      image_encoder: [null, null],
      requires_safety_checker: false,
      safety_checker: [null, null],
      scheduler: ['diffusers', 'PNDMScheduler'],
      text_encoder: ['transformers', 'CLIPTextModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      unet: ['diffusers', 'UNet2DConditionModel'],
      vae: ['diffusers', 'AutoencoderKL'],
    }),
    // Exactly the published file's keys: no prediction_type (epsilon), no timestep_spacing.
    'scheduler/scheduler_config.json': json({
      _class_name: 'PNDMScheduler',
      _diffusers_version: '0.6.0',
      beta_end: 0.012,
      beta_schedule: 'scaled_linear',
      beta_start: 0.00085,
      num_train_timesteps: 1000,
      set_alpha_to_one: false,
      skip_prk_steps: true,
      steps_offset: 1,
      trained_betas: null,
      clip_sample: false,
    }),
    'text_encoder/config.json': json(
      textEncoderConfig('CLIPTextModel', { hidden: 32, intermediate: 64, heads: 2, projection: 32, act: 'quick_gelu', pad: END_ID }),
    ),
    ...tokenizerFiles('tokenizer', END_TOKEN),
    'unet/config.json': json({
      _class_name: 'UNet2DConditionModel',
      _diffusers_version: '0.40.0',
      act_fn: 'silu',
      attention_head_dim: 2, // diffusers' legacy name: the head count at every level, as SD 1.5's 8
      block_out_channels: [32, 32, 64, 64],
      cross_attention_dim: 32, // the text encoder's hidden size
      down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
      flip_sin_to_cos: true,
      freq_shift: 0,
      in_channels: 4,
      layers_per_block: 2,
      mid_block_type: 'UNetMidBlock2DCrossAttn',
      norm_eps: 1e-5,
      norm_num_groups: 32,
      out_channels: 4,
      sample_size: 16, // latents of 128 x 128 images
      up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
      upcast_attention: false,
      use_linear_projection: false, // proj_in and proj_out are 1x1 convolutions, as in SD 1.x
    }),
    'vae/config.json': json(vaeConfig(0.18215)),
  };
}

export const SDXL_DEMO: DemoModel = {
  id: 'sdxl-tiny-demo',
  seed: 20_261_203,
  description:
    'Built-in demo: an SDXL-shaped model at tiny widths with random weights. It makes noise, not pictures; ' +
    'it exists so that upload, captioning, training and generation run end to end on a CPU in seconds. ' +
    'Point MODELS_DIR at stabilityai/stable-diffusion-xl-base-1.0 for real images.',
  files: sdxlDemoFiles,
};

export const SD15_DEMO: DemoModel = {
  id: 'sd15-tiny-demo',
  seed: 20_261_204,
  description:
    'Built-in demo: a Stable Diffusion 1.5-shaped model at tiny widths with random weights (one CLIP text encoder, ' +
    "SD 1.5's UNet blocks, so its LoRAs have SD 1.5's module names). It makes noise, not pictures; it exists so that " +
    'the SD 1.x path runs end to end on a CPU in seconds. Point MODELS_DIR at stable-diffusion-v1-5 for real images.',
  files: sd15DemoFiles,
};

/** The built-in demo models, in the order GET /v1/models lists them. */
export const DEMO_MODELS: readonly DemoModel[] = [SDXL_DEMO, SD15_DEMO];

export function demoModel(id: string): DemoModel | undefined {
  return DEMO_MODELS.find((demo) => demo.id === id);
}

/** Writes a demo model into `dir` (which must not exist): configs, tokenizers, then the weights. */
export async function writeDemoModel(dir: string, demo: DemoModel): Promise<void> {
  for (const [relative, content] of Object.entries(demo.files())) {
    await fs.mkdir(path.dirname(path.join(dir, relative)), { recursive: true });
    await fs.writeFile(path.join(dir, relative), content);
  }
  await writeRandomWeights({ modelDir: dir, seed: demo.seed });
}

const pending = new Map<string, Promise<string>>();

/**
 * A demo model's folder under `modelsRoot` (the SDXL one unless `demo` says otherwise),
 * written on first use. It is written into a temporary folder and renamed into place, so a
 * crash or a second process never leaves a half-written model behind: whoever renames
 * first wins, the other keeps that one.
 */
export function ensureDemoModel(modelsRoot: string, demo: DemoModel = SDXL_DEMO): Promise<string> {
  const dir = path.join(modelsRoot, demo.id);
  let ready = pending.get(dir);
  if (ready === undefined) {
    ready = (async () => {
      if (await exists(path.join(dir, 'unet', 'diffusion_pytorch_model.safetensors'))) return dir;
      await fs.mkdir(modelsRoot, { recursive: true });
      const staging = path.join(modelsRoot, `.${demo.id}-${randomBytes(6).toString('hex')}`);
      try {
        await writeDemoModel(staging, demo);
        await fs.rename(staging, dir).catch(async (error: NodeJS.ErrnoException) => {
          if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error;
        });
      } finally {
        await fs.rm(staging, { recursive: true, force: true });
      }
      return dir;
    })();
    pending.set(dir, ready);
    ready.catch(() => pending.delete(dir));
  }
  return ready;
}

async function exists(file: string): Promise<boolean> {
  return fs.access(file).then(
    () => true,
    () => false,
  );
}
