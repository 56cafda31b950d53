// The base models this server trains on and samples from: the built-in demo models, then
// every diffusers folder (model_index.json) and every single-file checkpoint
// (.safetensors) directly under MODELS_DIR. The id is the folder or file name. What a
// model is (family, prediction type, resolution, parameter counts) is the engine's
// inspectModel's answer, read from configs and weight headers alone; a model it refuses
// (a component missing, an unknown prediction type, keys of no known family) is left out
// of the list, and naming it is a 422 with the engine's reason.
//
// A single file has no configs or tokenizers of its own. It uses the diffusers folder
// named in a sidecar `<file>.config` (one line: a path, relative to MODELS_DIR or
// absolute), else the engine's built-in SD 1.5 or SDXL-base configs with the tokenizer
// folders beside the file.
import fs from 'node:fs/promises';
import path from 'node:path';
import { EngineLoadError, inspectModel, isInvalidArgument, type ModelSummary } from '../engine/index.js';
import { fieldError, notFound, ProblemError } from '../errors.js';
import { DEMO_MODELS, demoModel, ensureDemoModel, type DemoModel } from '../models/demo-model.js';
import { FAMILY_NAMES, type ModelFamily } from '../schemas/model-families.js';
import type { BaseModel, ModelComponent } from '../schemas/models.js';

/** A base model and where the engine loads it from. */
export interface ResolvedModel {
  model: BaseModel;
  /** The folder or file to load. */
  modelPath: string;
  /** For a single file: the diffusers folder whose configs and tokenizers it uses. */
  configDir?: string;
}

/** Where refused MODELS_DIR entries are reported (the app's logger). */
export interface ModelsLogger {
  warn(details: object, message: string): void;
}

/** A MODELS_DIR entry the engine refused to read as a model, with its reason. */
interface RejectedModel {
  rejected: string;
}

const SINGLE_FILE_CONFIG_SUFFIX = '.config';

const exists = (file: string) => fs.access(file).then(() => true, () => false);

function toBaseModel(id: string, summary: ModelSummary, described: { demo?: DemoModel; where: string; configDir?: string }): BaseModel {
  const family = FAMILY_NAMES[summary.family];
  const prediction = summary.predictionType === 'v_prediction' ? ', v-prediction' : '';
  const description = described.demo?.description ?? (summary.sourceLayout === 'diffusers'
    ? `${family} pipeline in diffusers layout${prediction} (${described.where})`
    : `${family} checkpoint in one ${summary.sourceLayout === 'sgm-single-file' ? 'SGM' : 'LDM'} file${prediction} (${described.where})` +
      (described.configDir === undefined ? '' : `, with the configs of ${described.configDir}`));
  const counts: Array<[ModelComponent, number]> = [
    ['unet', summary.unetParameters],
    ['vae', summary.vaeParameters],
    ['text_encoder', summary.textEncoderParameters],
    ...(summary.textEncoder2Parameters > 0 ? [['text_encoder_2', summary.textEncoder2Parameters] as [ModelComponent, number]] : []),
  ];
  return {
    id,
    family: summary.family,
    prediction_type: summary.predictionType,
    source_layout: summary.sourceLayout === 'diffusers' ? 'diffusers' : 'single_file',
    description,
    demo: described.demo !== undefined,
    default_resolution: summary.defaultResolution,
    components: counts.map(([component]) => component),
    parameters: { ...Object.fromEntries(counts), total: counts.reduce((sum, [, count]) => sum + count, 0) } as BaseModel['parameters'],
    clip_skip_max: summary.family === 'sdxl' ? null : summary.textEncoderLayers,
  };
}

/** The native engine (which writes the demo models and reads configs and headers) is not built or does not load. */
function engineUnavailable(error: EngineLoadError): ProblemError {
  return new ProblemError({ status: 503, type: 'engine-unavailable', title: 'Engine unavailable', detail: error.message });
}

/** A model the engine cannot read: 422, naming the request's field that names it. */
function modelInvalid(id: string, reason: string, where: string, field: string): ProblemError {
  return new ProblemError({
    status: 422,
    type: 'model-invalid',
    title: 'Unusable base model',
    detail: `Base model ${id} cannot be used: ${reason}`,
    errors: [fieldError(where, field, `names a model the engine cannot read: ${reason}`)],
  });
}

export class ModelsService {
  /** The reason last logged for each refused MODELS_DIR entry: each is logged once, not on every listing. */
  readonly #warned = new Map<string, string>();

  /** `modelsDir`: MODELS_DIR. `demoRoot`: where the demo models are written (DATA_DIR/models). */
  constructor(
    private readonly modelsDir: string,
    private readonly demoRoot: string,
    private readonly logger?: ModelsLogger,
  ) {}

  /** The demo models, then MODELS_DIR's models sorted by id (those the engine refuses left out). */
  async list(): Promise<ResolvedModel[]> {
    const models: ResolvedModel[] = [];
    for (const demo of DEMO_MODELS) models.push(await this.demo(demo));
    for (const id of await this.candidateIds()) {
      const found = await this.find(id);
      if (found !== undefined && !('rejected' in found)) models.push(found);
    }
    return models;
  }

  /** One model by id; a 404 problem when there is none, a 422 naming the path's id when the engine refuses it. */
  async get(id: string): Promise<ResolvedModel> {
    const found = await this.lookUp(id);
    if (found === undefined) throw notFound('Model', id);
    if ('rejected' in found) throw modelInvalid(id, found.rejected, 'params', 'id');
    return found;
  }

  /** The model a request body names; an unknown or unusable one is a 422 naming the `model` field (the request is fine, the id is not). */
  async getNamed(id: string): Promise<ResolvedModel> {
    const found = await this.lookUp(id);
    if (found === undefined) {
      throw new ProblemError({
        status: 422,
        type: 'model-not-found',
        title: 'Unknown model',
        detail: `No base model ${id} on this server; GET /v1/models lists them`,
        errors: [fieldError('body', 'model', 'is not a model of this server (GET /v1/models lists them)')],
      });
    }
    if ('rejected' in found) throw modelInvalid(id, found.rejected, 'body', 'model');
    return found;
  }

  /** The family of a model, or undefined when this server has no usable model of that id (any more). */
  async familyOf(id: string): Promise<ModelFamily | undefined> {
    const found = await this.lookUp(id);
    return found === undefined || 'rejected' in found ? undefined : found.model.family;
  }

  private async lookUp(id: string): Promise<ResolvedModel | RejectedModel | undefined> {
    const demo = demoModel(id);
    if (demo !== undefined) return this.demo(demo);
    return (await this.candidateIds()).includes(id) ? this.find(id) : undefined;
  }

  private async demo(demo: DemoModel): Promise<ResolvedModel> {
    try {
      const dir = await ensureDemoModel(this.demoRoot, demo);
      return { model: toBaseModel(demo.id, await inspectModel({ modelPath: dir }), { demo, where: dir }), modelPath: dir };
    } catch (error) {
      throw error instanceof EngineLoadError ? engineUnavailable(error) : error;
    }
  }

  /** Names directly under MODELS_DIR that may be models (no hidden entries, not the demos' folders). */
  private async candidateIds(): Promise<string[]> {
    const entries = await fs.readdir(this.modelsDir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return [] as string[];
      throw error;
    });
    return entries.filter((name) => !name.startsWith('.') && demoModel(name) === undefined).sort();
  }

  /** A MODELS_DIR entry as a model, refused (with the engine's reason), or undefined when it is no model at all. */
  private async find(id: string): Promise<ResolvedModel | RejectedModel | undefined> {
    const entry = path.join(this.modelsDir, id);
    const stat = await fs.stat(entry).catch(() => undefined);
    let configDir: string | undefined;
    if (stat?.isDirectory()) {
      if (!(await exists(path.join(entry, 'model_index.json')))) return undefined;
    } else if (stat?.isFile() && id.endsWith('.safetensors')) {
      const sidecar = entry + SINGLE_FILE_CONFIG_SUFFIX;
      if (await exists(sidecar)) configDir = path.resolve(this.modelsDir, (await fs.readFile(sidecar, 'utf8')).trim());
    } else {
      return undefined;
    }
    try {
      const summary = await inspectModel({ modelPath: entry, ...(configDir === undefined ? {} : { configDir }) });
      this.#warned.delete(id);
      return {
        model: toBaseModel(id, summary, { where: entry, ...(configDir === undefined ? {} : { configDir }) }),
        modelPath: entry,
        ...(configDir === undefined ? {} : { configDir }),
      };
    } catch (error) {
      if (error instanceof EngineLoadError) throw engineUnavailable(error);
      if (!isInvalidArgument(error)) throw error;
      if (this.#warned.get(id) !== error.message) {
        this.#warned.set(id, error.message);
        this.logger?.warn({ model: id, reason: error.message }, 'MODELS_DIR entry is not a usable model; left out of the list');
      }
      return { rejected: error.message };
    }
  }
}
