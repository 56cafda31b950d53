// The base models this server trains on and samples from: the built-in demo models, then
// every diffusers folder (model_index.json) and every single-file checkpoint
// (.safetensors) directly under MODELS_DIR, then the tenant's own models (trained by its
// full fine-tuning runs, tenant_models). The id is the folder or file name, or mdl_... for
// a tenant's. What a model is (family, prediction type, resolution, parameter counts) is
// the engine's inspectModel's answer, read from configs and weight headers alone (for a
// tenant's model, once, when its run registered it); a model it refuses (a component
// missing, an unknown prediction type, keys of no known family) is left out of the list,
// and naming it is a 422 with the engine's reason.
//
// A single file has no configs or tokenizers of its own. It uses the diffusers folder
// named in a sidecar `<file>.config` (one line: a path, relative to MODELS_DIR or
// absolute), else the engine's built-in SD 1.5 or SDXL-base configs with the tokenizer
// folders beside the file.
//
// A tenant's model lives in its run's folder (the run cannot be deleted while it exists);
// deleting it removes its files and its model artifacts from the run, never while a
// queued or running job names it. The server's models cannot be deleted through the API.
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Database, Queryable } from '../db/database.js';
import { idPattern } from '../db/ids.js';
import { EngineLoadError, inspectModel, isInvalidArgument, type ModelSummary } from '../engine/index.js';
import { fieldError, notFound, ProblemError } from '../errors.js';
import { DEMO_MODELS, demoModel, ensureDemoModel, type DemoModel } from '../models/demo-model.js';
import { createTenantModelsRepository, type NewTenantModel, type TenantModelRow } from '../repositories/tenant-models.js';
import { createTrainingRunArtifactsRepository, MODEL_ARTIFACT_KINDS } from '../repositories/training-run-artifacts.js';
import { FAMILY_NAMES, type ModelFamily } from '../schemas/model-families.js';
import { TENANT_MODEL_ID_PREFIX, type BaseModel, type ModelComponent } from '../schemas/models.js';
import type { RunFileStore } from '../storage/run-file-store.js';

/** A base model and where the engine loads it from. */
export interface ResolvedModel {
  model: BaseModel;
  /** The folder or file to load. */
  modelPath: string;
  /** For a single file: the diffusers folder whose configs and tokenizers it uses. */
  configDir?: string;
}

/** Where tenants' models are: their rows, and the runs' folders that hold their files. */
export interface TenantModelStore {
  db: Database;
  runFiles: RunFileStore;
}

const TENANT_MODEL_ID = new RegExp(idPattern(TENANT_MODEL_ID_PREFIX));

/** Whether `id` names a tenant's model (mdl_...), never a server's. */
export function isTenantModelId(id: string): boolean {
  return TENANT_MODEL_ID.test(id);
}

/** The files of a full run's model, in the run's folder (the trainer's outputName "model"). */
export const MODEL_OUTPUT_NAME = 'model';
export const MODEL_FILES = {
  folder: MODEL_OUTPUT_NAME,
  singleFile: `${MODEL_OUTPUT_NAME}.safetensors`,
  /** The EMA's single file; an SD 2.x model (no single file) has its EMA as a folder. */
  emaFile: `${MODEL_OUTPUT_NAME}_ema.safetensors`,
  emaFolder: `${MODEL_OUTPUT_NAME}_ema`,
} as const;
/** Every name a full run's model files may have in its folder. */
export const MODEL_OUTPUT_NAMES = [MODEL_FILES.singleFile, MODEL_FILES.emaFile, MODEL_FILES.folder, MODEL_FILES.emaFolder] as const;

/** A folder's artifact: `<folder>.tar`. */
export function tarName(folder: string): string {
  return `${folder}.tar`;
}

/** The folder a tar artifact is made of, or undefined for an artifact that is a file. */
export function folderOfTar(name: string): string | undefined {
  return name.endsWith('.tar') ? name.slice(0, -'.tar'.length) : undefined;
}

/** The top folder of a folder's tar: `<run id>-<folder>`, so archives of several runs unpack side by side. */
export function tarPrefix(runId: string, folder: string): string {
  return `${runId}-${folder}`;
}
/** Tokenizer folders linked beside a single file whose base had them beside its own (no configs folder). */
export const SINGLE_FILE_TOKENIZERS = ['tokenizer', 'tokenizer_2'] as const;
/** Every name a model may hold in its run's folder: what deleting it removes. */
const MODEL_FILE_NAMES = [...MODEL_OUTPUT_NAMES, ...SINGLE_FILE_TOKENIZERS];

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

const SERVER_OWNED = { owner: 'server', name: null, base_model: null, training_run_id: null, byte_size: null, created_at: null } as const;

function toBaseModel(
  id: string,
  summary: ModelSummary,
  described: { demo?: DemoModel; where?: string; configDir?: string; tenant?: TenantModelRow },
): BaseModel {
  const family = FAMILY_NAMES[summary.family];
  const prediction = summary.predictionType === 'v_prediction' ? ', v-prediction' : '';
  const { tenant } = described;
  const description = described.demo?.description ?? (tenant !== undefined
    ? `${family} model fine-tuned from ${tenant.base_model_id} by training run ${tenant.training_run_id}${prediction}`
    : summary.sourceLayout === 'diffusers'
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
    ...(tenant === undefined ? SERVER_OWNED : {
      owner: 'tenant',
      name: tenant.name,
      base_model: tenant.base_model_id,
      training_run_id: tenant.training_run_id,
      byte_size: Number(tenant.stored_bytes),
      created_at: tenant.created_at.toISOString(),
    }),
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

/** The 422 of a body naming a model the tenant does not have (or no longer has). */
function modelNotFound(id: string, field: string): ProblemError {
  return new ProblemError({
    status: 422,
    type: 'model-not-found',
    title: 'Unknown model',
    detail: `No base model ${id} on this server; GET /v1/models lists them`,
    errors: [fieldError('body', field, 'is not a model of this server or of yours (GET /v1/models lists them)')],
  });
}

export class ModelsService {
  /** The reason last logged for each refused MODELS_DIR entry: each is logged once, not on every listing. */
  readonly #warned = new Map<string, string>();
  readonly #deletedListeners: Array<(id: string) => void | Promise<void>> = [];

  /**
   * `modelsDir`: MODELS_DIR. `demoRoot`: where the demo models are written (DATA_DIR/models).
   * `tenantModels`: where tenants' models are (without it, the server's models only).
   */
  constructor(
    private readonly modelsDir: string,
    private readonly demoRoot: string,
    private readonly logger?: ModelsLogger,
    private readonly tenantModels?: TenantModelStore,
  ) {}

  /**
   * The demo models, then MODELS_DIR's models sorted by id (those the engine refuses left
   * out), then the tenant's own, newest first (none when `tenantId` is null).
   */
  async list(tenantId: string | null): Promise<ResolvedModel[]> {
    const models: ResolvedModel[] = [];
    for (const demo of DEMO_MODELS) models.push(await this.demo(demo));
    for (const id of await this.candidateIds()) {
      const found = await this.find(id);
      if (found !== undefined && !('rejected' in found)) models.push(found);
    }
    if (tenantId !== null && this.tenantModels !== undefined) {
      for (const row of await createTenantModelsRepository(this.tenantModels.db).list(tenantId)) models.push(this.ofTenant(row));
    }
    return models;
  }

  /**
   * One model by id, the server's or the tenant's (another tenant's is unknown); a 404
   * problem when there is none, a 422 naming the path's id when the engine refuses it.
   */
  async get(tenantId: string | null, id: string): Promise<ResolvedModel> {
    const found = await this.lookUp(tenantId, id);
    if (found === undefined) throw notFound('Model', id);
    if ('rejected' in found) throw modelInvalid(id, found.rejected, 'params', 'id');
    return found;
  }

  /**
   * The model a request body names in `field`; an unknown or unusable one is a 422 naming
   * that field (the request is fine, the id is not). Another tenant's model is unknown.
   */
  async getNamed(tenantId: string, id: string, field = 'model'): Promise<ResolvedModel> {
    const found = await this.lookUp(tenantId, id);
    if (found === undefined) throw modelNotFound(id, field);
    if ('rejected' in found) throw modelInvalid(id, found.rejected, 'body', field);
    return found;
  }

  /**
   * In the caller's transaction: a tenant's model named by a job being queued, locked against
   * deletion until the transaction ends (a 422 naming `field` when it was deleted meanwhile).
   * The server's models need no lock: they cannot be deleted through the API.
   */
  async lockForJob(tx: Queryable, tenantId: string, id: string, field = 'model'): Promise<void> {
    if (!isTenantModelId(id)) return;
    if ((await createTenantModelsRepository(tx).lockShared(tenantId, id)) === null) throw modelNotFound(id, field);
  }

  /** The family of a model, or undefined when there is no usable model of that id (any more). */
  async familyOf(tenantId: string | null, id: string): Promise<ModelFamily | undefined> {
    const found = await this.lookUp(tenantId, id);
    return found === undefined || 'rejected' in found ? undefined : found.model.family;
  }

  /**
   * Registers a succeeded full run's model (call it in the transaction that marks the run
   * succeeded, once its files are in place and published).
   */
  static async registerFromRun(tx: Queryable, tenantId: string, model: NewTenantModel): Promise<TenantModelRow> {
    return createTenantModelsRepository(tx).insert(tenantId, model);
  }

  /** Calls `listener` with the id of each tenant model deleted (resident copies go). */
  onDeleted(listener: (id: string) => void | Promise<void>): void {
    this.#deletedListeners.push(listener);
  }

  /**
   * Deletes a tenant's model: its row, its artifacts in its run, then its files. 403 for a
   * server model, 404 for one the tenant does not have, 409 while a queued or running
   * training run or generation names it.
   */
  async delete(tenantId: string, id: string): Promise<void> {
    if (!isTenantModelId(id) || this.tenantModels === undefined) {
      const found = await this.lookUp(null, id);
      if (found === undefined) throw notFound('Model', id);
      throw new ProblemError({
        status: 403,
        type: 'model-read-only',
        title: 'Model belongs to the server',
        detail: `Model ${id} is ${demoModel(id) !== undefined ? 'a built-in demo model' : 'in MODELS_DIR'}: every tenant uses it, and only ` +
          "the server's operator removes it (from MODELS_DIR). DELETE removes your own models (owner: tenant)",
      });
    }
    const { db, runFiles } = this.tenantModels;
    const row = await db.transaction(async (tx) => {
      const models = createTenantModelsRepository(tx);
      const locked = await models.lockForDelete(tenantId, id);
      if (locked === null) throw notFound('Model', id);
      const users = await models.openJobsUsing(id);
      if (users.length > 0) {
        const named = users.slice(0, 5).map((job) => `${job.kind.replace('_', ' ')} ${job.id}`).join(', ');
        throw new ProblemError({
          status: 409,
          type: 'model-in-use',
          title: 'Model in use',
          detail: `Model ${id} is used by ${users.length} queued or running job(s): ${named}${users.length > 5 ? ', ...' : ''}; ` +
            'delete it when they have finished (or cancel them)',
        });
      }
      await models.delete(tenantId, id);
      await createTrainingRunArtifactsRepository(tx).deleteKinds(locked.training_run_id, MODEL_ARTIFACT_KINDS);
      return locked;
    });
    // After the row: a crash in between leaves files without a model, never a model without its files.
    await runFiles.deleteFiles(row.training_run_id, MODEL_FILE_NAMES);
    for (const listener of this.#deletedListeners) await listener(id);
  }

  private async lookUp(tenantId: string | null, id: string): Promise<ResolvedModel | RejectedModel | undefined> {
    const demo = demoModel(id);
    if (demo !== undefined) return this.demo(demo);
    if (isTenantModelId(id)) {
      if (tenantId === null || this.tenantModels === undefined) return undefined;
      const row = await createTenantModelsRepository(this.tenantModels.db).get(tenantId, id);
      return row === null ? undefined : this.ofTenant(row);
    }
    return (await this.candidateIds()).includes(id) ? this.find(id) : undefined;
  }

  private ofTenant(row: TenantModelRow): ResolvedModel {
    return {
      model: toBaseModel(row.id, row.summary, { tenant: row }),
      modelPath: this.tenantModels!.runFiles.localPath(row.training_run_id, row.load_name),
      ...(row.config_dir === null ? {} : { configDir: row.config_dir }),
    };
  }

  private async demo(demo: DemoModel): Promise<ResolvedModel> {
    try {
      const dir = await ensureDemoModel(this.demoRoot, demo);
      return { model: toBaseModel(demo.id, await inspectModel({ modelPath: dir }), { demo, where: dir }), modelPath: dir };
    } catch (error) {
      throw error instanceof EngineLoadError ? engineUnavailable(error) : error;
    }
  }

  /** Names directly under MODELS_DIR that may be models (no hidden entries, not the demos' folders, none named as a tenant's model). */
  private async candidateIds(): Promise<string[]> {
    const entries = await fs.readdir(this.modelsDir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return [] as string[];
      throw error;
    });
    return entries.filter((name) => !name.startsWith('.') && demoModel(name) === undefined && !isTenantModelId(name)).sort();
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
