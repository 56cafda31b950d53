// What a succeeded training run leaves behind becomes the tenant's, in the transaction that
// marks the run succeeded: a LoRA run's kohya file as a LoRA (its bytes a blob), a full
// run's model as a model of its own (its files stay in the run's folder, made to stand alone
// of other runs' folders). The training worker calls this at a run's end; publishing the
// files as artifacts stays with the worker's reporter, between prepareModel and completeModel.
import fs from 'node:fs/promises';
import path from 'node:path';
import { inspectModel, type ModelSummary, type TrainResult } from '../engine/index.js';
import type { Database } from '../db/database.js';
import { createImagesRepository } from '../repositories/images.js';
import type { NewLora } from '../repositories/loras.js';
import { createTrainingRunArtifactsRepository, MODEL_ARTIFACT_KINDS, type ArtifactKind } from '../repositories/training-run-artifacts.js';
import { createTrainingRunsRepository, type TrainingRunRow } from '../repositories/training-runs.js';
import type { ResolvedTrainingParams } from '../schemas/training-params.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RunFileStore } from '../storage/run-file-store.js';
import { LorasService, loraFileFacts } from './loras.js';
import { MODEL_FILES, MODEL_OUTPUT_NAMES, ModelsService, SINGLE_FILE_TOKENIZERS, tarName, tarPrefix, type ResolvedModel } from './models.js';

/** One file (or folder, published as a tar) of a full run's model, to publish as an artifact. */
export interface ModelOutput {
  name: string;
  kind: ArtifactKind;
  /** For a folder: the tar's name among the artifacts and its entries' top folder. */
  tar?: { name: string; prefix: string };
}

/** A full run's model files, ready to publish and register. */
export interface PreparedModel {
  /** What the model loads from in the run's folder: the diffusers folder, else the single file. */
  loadName: string;
  /** Configs for a single file whose base had them apart (null: beside the file). */
  configDir: string | null;
  summary: ModelSummary;
  outputs: ModelOutput[];
}

export interface TrainingResultsOptions {
  db: Database;
  blobs: BlobStore;
  files: RunFileStore;
}

/**
 * The LoRA resource a succeeded run registers: its kohya file (what A1111 and ComfyUI read).
 * SDXL files name UNet modules by SGM blocks (input_blocks_4_1_...) and the text encoders
 * lora_te1_/lora_te2_; SD 1.x/2.x files use diffusers' block names and lora_te_.
 */
function describeTrainedLora(bytes: Buffer, run: TrainingRunRow, params: ResolvedTrainingParams): Omit<NewLora, 'source'> {
  const facts = loraFileFacts(bytes);
  const keys = facts.tensorNames.filter((key) => key.endsWith('.lora_down.weight'));
  const components = [
    ...(keys.some((key) => key.startsWith('lora_unet_')) ? ['unet'] : []),
    ...(keys.some((key) => key.startsWith('lora_te1_') || key.startsWith('lora_te_')) ? ['text_encoder'] : []),
    ...(keys.some((key) => key.startsWith('lora_te2_')) ? ['text_encoder_2'] : []),
  ];
  const sgmNames = keys.some((key) => /^lora_unet_(input_blocks|middle_block|output_blocks)_/.test(key));
  return {
    name: run.name ?? `${run.trigger_token}-${run.id}`,
    training_run_id: run.id,
    model_id: run.model_id,
    trigger_phrase: run.trigger_token,
    sha256: facts.sha256,
    autov3: facts.autov3,
    byte_size: facts.byteSize,
    layout: sgmNames ? 'kohya-sgm' : 'kohya-diffusers',
    rank: params.rank ?? 0,
    alpha: params.alpha ?? 0,
    modules: keys.length,
    components,
  };
}

export class TrainingResultsService {
  constructor(private readonly options: TrainingResultsOptions) {}

  /**
   * Marks a LoRA run succeeded (while `owner` holds its lease) and registers its LoRA. The
   * file is a blob, written under its lock as uploads are (services/images.ts). False when
   * the lease was lost, and nothing is registered.
   */
  async completeLoraRun(run: TrainingRunRow, owner: string, params: ResolvedTrainingParams, loraPath: string, metrics: Record<string, number>): Promise<boolean> {
    const bytes = await fs.readFile(loraPath);
    const lora = describeTrainedLora(bytes, run, params);
    return this.options.db.transaction(async (tx) => {
      await createImagesRepository(tx).lockBlob(lora.sha256);
      await this.options.blobs.put(bytes);
      if (!(await createTrainingRunsRepository(tx).finish(run.id, owner, 'succeeded', { metrics }))) return false;
      await LorasService.registerFromRun(tx, run.tenant_id, lora);
      return true;
    });
  }

  /** Forgets a full run's model files and their artifacts: a run that died while writing them writes them again. */
  async discardModel(runId: string): Promise<void> {
    await createTrainingRunArtifactsRepository(this.options.db).deleteKinds(runId, MODEL_ARTIFACT_KINDS);
    await this.options.files.deleteFiles(runId, [...MODEL_OUTPUT_NAMES, ...SINGLE_FILE_TOKENIZERS]);
  }

  /**
   * Makes a full run's model stand alone in its folder (links into other runs' folders become
   * copies; links to server models stay, as they outlive any run) and describes it: what it
   * loads from, what the engine reads in it, and the files to publish.
   */
  async prepareModel(run: TrainingRunRow, base: ResolvedModel, result: TrainResult): Promise<PreparedModel> {
    const { files } = this.options;
    const hasFolder = result.modelDir !== undefined;
    if (!hasFolder && result.modelPath === undefined) throw new Error('the trainer completed without writing the model');
    // The EMA is a single file beside the model's, or (SD 2.x: no single file) a folder beside its folder.
    const emaName = result.emaModelPath === undefined ? undefined
      : (await fs.stat(result.emaModelPath)).isDirectory() ? MODEL_FILES.emaFolder : MODEL_FILES.emaFile;
    if (hasFolder) await files.detachLinks(run.id, MODEL_FILES.folder);
    if (emaName === MODEL_FILES.emaFolder) await files.detachLinks(run.id, emaName);
    // A single file whose base had no configs folder reads its tokenizers beside it, as the base did.
    let configDir: string | null = null;
    if (!hasFolder) {
      configDir = base.configDir ?? null;
      if (configDir === null) {
        for (const name of SINGLE_FILE_TOKENIZERS) {
          const beside = path.join(path.dirname(base.modelPath), name);
          const target = await fs.realpath(beside).catch(() => undefined);
          if (target !== undefined) await files.link(run.id, name, target);
        }
      }
    }
    const loadName = hasFolder ? MODEL_FILES.folder : MODEL_FILES.singleFile;
    const summary = await inspectModel({ modelPath: files.localPath(run.id, loadName), ...(configDir === null ? {} : { configDir }) });
    const asTar = (folder: string) => ({ name: tarName(folder), prefix: tarPrefix(run.id, folder) });
    const outputs: ModelOutput[] = [
      ...(result.modelPath === undefined ? [] : [{ name: MODEL_FILES.singleFile, kind: 'model' as const }]),
      ...(emaName === undefined ? [] : [{ name: emaName, kind: 'model_ema' as const, ...(emaName === MODEL_FILES.emaFolder ? { tar: asTar(emaName) } : {}) }]),
      ...(hasFolder ? [{ name: MODEL_FILES.folder, kind: 'model_diffusers' as const, tar: asTar(MODEL_FILES.folder) }] : []),
    ];
    return { loadName, configDir, summary, outputs };
  }

  /** The bytes a full run's model keeps of its own (links to server models not counted). */
  async storedModelBytes(runId: string): Promise<number> {
    return this.options.files.ownBytes(runId, [...MODEL_OUTPUT_NAMES, ...SINGLE_FILE_TOKENIZERS]);
  }

  /**
   * Marks a full run succeeded (while `owner` holds its lease) and registers its model as the
   * tenant's. The model's id, or undefined when the lease was lost and nothing is registered.
   */
  async completeModelRun(run: TrainingRunRow, owner: string, model: PreparedModel, storedBytes: number, metrics: Record<string, number>): Promise<string | undefined> {
    return this.options.db.transaction(async (tx) => {
      if (!(await createTrainingRunsRepository(tx).finish(run.id, owner, 'succeeded', { metrics }))) return undefined;
      const row = await ModelsService.registerFromRun(tx, run.tenant_id, {
        training_run_id: run.id,
        base_model_id: run.model_id,
        name: run.name,
        family: model.summary.family,
        load_name: model.loadName,
        config_dir: model.configDir,
        summary: model.summary,
        stored_bytes: storedBytes,
      });
      return row.id;
    });
  }
}
