// The base models this server trains on and samples from: the built-in demo model,
// then every diffusers folder (model_index.json) and every SGM single-file checkpoint
// (.safetensors) directly under MODELS_DIR. The id is the folder or file name.
//
// A single file has no configs or tokenizers of its own. It uses the diffusers folder
// named in a sidecar `<file>.config` (one line: a path, relative to MODELS_DIR or
// absolute), else SDXL-base's configs with tokenizer/ and tokenizer_2/ beside the file,
// as the engine loads it.
import fs from 'node:fs/promises';
import path from 'node:path';
import { EngineLoadError, inspectSafetensors } from '../engine/index.js';
import { fieldError, notFound, ProblemError } from '../errors.js';
import { DEMO_MODEL_DESCRIPTION, DEMO_MODEL_ID, ensureDemoModel } from '../models/demo-model.js';
import type { BaseModel } from '../schemas/models.js';

/** A base model and where the engine loads it from. */
export interface ResolvedModel {
  model: BaseModel;
  /** The folder or file to load. */
  modelPath: string;
  /** For a single file: the diffusers folder whose configs and tokenizers it uses. */
  configDir?: string;
}

type Component = keyof Omit<BaseModel['parameters'], 'total'>;
const COMPONENTS: Array<[Component, string, string]> = [
  // component, diffusers folder and weights stem, SGM single-file key prefix
  ['unet', 'unet/diffusion_pytorch_model', 'model.diffusion_model.'],
  ['text_encoder', 'text_encoder/model', 'conditioner.embedders.0.'],
  ['text_encoder_2', 'text_encoder_2/model', 'conditioner.embedders.1.'],
  ['vae', 'vae/diffusion_pytorch_model', 'first_stage_model.'],
];
const SDXL_BASE_RESOLUTION = 1024;
const SINGLE_FILE_CONFIG_SUFFIX = '.config';

const exists = (file: string) => fs.access(file).then(() => true, () => false);

async function readJson(file: string): Promise<Record<string, unknown>> {
  return JSON.parse(await fs.readFile(file, 'utf8')) as Record<string, unknown>;
}

function elements(shape: number[]): number {
  return shape.reduce((product, size) => product * size, 1);
}

function withTotal(counts: Record<Component, number>): BaseModel['parameters'] {
  return { ...counts, total: counts.unet + counts.text_encoder + counts.text_encoder_2 + counts.vae };
}

/** The weight files of one diffusers component: full precision, else fp16, else the shards an index names. */
async function componentFiles(folder: string, stem: string): Promise<string[]> {
  for (const name of [`${stem}.safetensors`, `${stem}.fp16.safetensors`]) {
    if (await exists(path.join(folder, name))) return [path.join(folder, name)];
  }
  for (const name of [`${stem}.safetensors.index.json`, `${stem}.safetensors.index.fp16.json`]) {
    const index = path.join(folder, name);
    if (!(await exists(index))) continue;
    const weightMap = ((await readJson(index)).weight_map ?? {}) as Record<string, string>;
    return [...new Set(Object.values(weightMap))].map((shard) => path.join(path.dirname(index), shard));
  }
  return [];
}

async function countFiles(files: string[], prefix = ''): Promise<number> {
  let count = 0;
  for (const file of files) {
    const header = await inspectSafetensors(file);
    for (const [name, tensor] of Object.entries(header.tensors)) if (name.startsWith(prefix)) count += elements(tensor.shape);
  }
  return count;
}

/** Image side of a diffusers folder: the UNet's latent size times the VAE's downscale. */
async function folderResolution(dir: string): Promise<number> {
  const unet = await readJson(path.join(dir, 'unet', 'config.json')).catch(() => ({}) as Record<string, unknown>);
  const vae = await readJson(path.join(dir, 'vae', 'config.json')).catch(() => ({}) as Record<string, unknown>);
  const sampleSize = typeof unet.sample_size === 'number' ? unet.sample_size : SDXL_BASE_RESOLUTION / 8;
  const levels = Array.isArray(vae.block_out_channels) ? vae.block_out_channels.length : 4;
  return sampleSize * 2 ** (levels - 1);
}

async function describeFolder(id: string, dir: string, demo: boolean): Promise<ResolvedModel> {
  const counts = {} as Record<Component, number>;
  for (const [component, weights] of COMPONENTS) {
    counts[component] = await countFiles(await componentFiles(path.join(dir, path.dirname(weights)), path.basename(weights)));
  }
  return {
    model: {
      id,
      architecture: 'sdxl',
      source_layout: 'diffusers',
      description: demo ? DEMO_MODEL_DESCRIPTION : `SDXL pipeline in diffusers layout (${dir})`,
      demo,
      default_resolution: await folderResolution(dir),
      parameters: withTotal(counts),
    },
    modelPath: dir,
  };
}

async function describeSingleFile(id: string, file: string, modelsDir: string): Promise<ResolvedModel | undefined> {
  const sidecar = file + SINGLE_FILE_CONFIG_SUFFIX;
  const configDir = (await exists(sidecar))
    ? path.resolve(modelsDir, (await fs.readFile(sidecar, 'utf8')).trim())
    : undefined;
  const counts = {} as Record<Component, number>;
  for (const [component, , prefix] of COMPONENTS) counts[component] = await countFiles([file], prefix);
  if (counts.unet === 0) return undefined; // not an SGM checkpoint (a LoRA, a VAE alone, ...)
  return {
    model: {
      id,
      architecture: 'sdxl',
      source_layout: 'single_file',
      description: `SDXL checkpoint in one SGM file (${file})` + (configDir ? `, with the configs of ${configDir}` : ''),
      demo: false,
      default_resolution: configDir ? await folderResolution(configDir) : SDXL_BASE_RESOLUTION,
      parameters: withTotal(counts),
    },
    modelPath: file,
    ...(configDir === undefined ? {} : { configDir }),
  };
}

/** The native engine (which writes the demo model and reads weight headers) is not built or does not load. */
function engineUnavailable(error: EngineLoadError): ProblemError {
  return new ProblemError({ status: 503, type: 'engine-unavailable', title: 'Engine unavailable', detail: error.message });
}

export class ModelsService {
  /** `modelsDir`: MODELS_DIR. `demoRoot`: where the demo model is written (DATA_DIR/models). */
  constructor(
    private readonly modelsDir: string,
    private readonly demoRoot: string,
  ) {}

  /** The demo model, then MODELS_DIR's models sorted by id. */
  async list(): Promise<ResolvedModel[]> {
    const models = [await this.demo()];
    for (const id of await this.candidateIds()) {
      const model = await this.describe(id);
      if (model !== undefined) models.push(model);
    }
    return models;
  }

  /** One model by id; a 404 problem when there is none. */
  async get(id: string): Promise<ResolvedModel> {
    if (id === DEMO_MODEL_ID) return this.demo();
    const model = (await this.candidateIds()).includes(id) ? await this.describe(id) : undefined;
    if (model === undefined) throw notFound('Model', id);
    return model;
  }

  /** The model a request body names; an unknown one is a 422 naming the `model` field (the request is fine, the id is not ours). */
  async getNamed(id: string): Promise<ResolvedModel> {
    return this.get(id).catch((error: unknown) => {
      if (!(error instanceof ProblemError) || error.status !== 404) throw error;
      throw new ProblemError({
        status: 422,
        type: 'model-not-found',
        title: 'Unknown model',
        detail: `No base model ${id} on this server; GET /v1/models lists them`,
        errors: [fieldError('body', 'model', 'is not a model of this server (GET /v1/models lists them)')],
      });
    });
  }

  private async demo(): Promise<ResolvedModel> {
    try {
      return await describeFolder(DEMO_MODEL_ID, await ensureDemoModel(this.demoRoot), true);
    } catch (error) {
      throw error instanceof EngineLoadError ? engineUnavailable(error) : error;
    }
  }

  /** Names directly under MODELS_DIR that may be models (no hidden entries, not the demo's folder). */
  private async candidateIds(): Promise<string[]> {
    const entries = await fs.readdir(this.modelsDir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return [] as string[];
      throw error;
    });
    return entries.filter((name) => !name.startsWith('.') && name !== DEMO_MODEL_ID).sort();
  }

  private async describe(id: string): Promise<ResolvedModel | undefined> {
    const entry = path.join(this.modelsDir, id);
    const stat = await fs.stat(entry).catch(() => undefined);
    if (stat?.isDirectory() && (await exists(path.join(entry, 'model_index.json')))) return describeFolder(id, entry, false);
    if (stat?.isFile() && id.endsWith('.safetensors')) return describeSingleFile(id, entry, this.modelsDir);
    return undefined;
  }
}
