// The background runner of training runs, one per process, on the shared JobRunner
// (job-runner.ts). A claimed run trains on the native trainer's own thread, writing into
// its work folder of the run file store; training-run-reporter.ts turns the trainer's
// reports into progress, events, log lines and published artifacts. A run whose
// process died is claimed again once its lease runs out and resumes from its latest
// checkpoint (attempt + 1). A cancel stops it at the next step with a checkpoint written;
// on shutdown the run is checkpointed the same way and handed back to the queue.
import type { FastifyBaseLogger } from 'fastify';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { train, type TrainResult } from '../engine/index.js';
import type { Database } from '../db/database.js';
import type { ServiceMetrics } from '../metrics/service-metrics.js';
import { createImagesRepository } from '../repositories/images.js';
import type { NewLora } from '../repositories/loras.js';
import { createTrainingRunsRepository, type TrainingRunRow } from '../repositories/training-runs.js';
import { storedTrainingParams, trainConfigFields, type PriorPreservationParams, type ResolvedTrainingParams } from '../schemas/training-params.js';
import type { ClassImagesService } from '../services/class-images.js';
import { LorasService, loraFileFacts } from '../services/loras.js';
import type { ModelsService } from '../services/models.js';
import type { RunEventsBus } from '../services/run-events-bus.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RunFileStore } from '../storage/run-file-store.js';
import { JobRunner, stopReason } from './job-runner.js';
import { TrainingRunReporter } from './training-run-reporter.js';

export interface TrainingWorkerOptions {
  db: Database;
  models: ModelsService;
  blobs: BlobStore;
  /** Prior preservation's class images (made on the resident models, cached). */
  classImages: ClassImagesService;
  /** Each run's files: the trainer writes them into the run's work folder and they are published from there. */
  files: RunFileStore;
  bus: RunEventsBus;
  logger: FastifyBaseLogger;
  /** "cpu", "cuda" or "cuda:N". */
  device: string;
  slots: number;
  /** Tries of one run whose process died before it fails (a graceful hand-back is not counted). */
  maxAttempts: number;
  leaseMs: number;
  heartbeatMs: number;
  pollMs: number;
  /** Step times, throughput and loss for /metrics. */
  metrics?: ServiceMetrics;
}

/**
 * Identifies what a LoRA was trained on: the images' bytes and captions in training order
 * (the trainer's own ss_dataset_hash also covers its decoded pixels and buckets).
 */
function datasetHash(images: Array<{ sha256: string; caption: string }>): string {
  const hash = createHash('sha256');
  for (const image of images) hash.update(`${image.sha256}\t${image.caption}\n`);
  return hash.digest('hex');
}

/** The newest checkpoint of a run's earlier attempts, if any (the trainer names them step-NNNNNN). */
async function latestCheckpoint(outputDir: string): Promise<string | undefined> {
  const dir = path.join(outputDir, 'checkpoints');
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  const latest = names.filter((name) => /^step-\d+\.safetensors$/.test(name)).sort().at(-1);
  return latest === undefined ? undefined : path.join(dir, latest);
}

/**
 * Deletes the half-written files a killed process left in the work folder: the engine writes
 * every file as `<name>.tmp-<pid>-<n>` and renames it when complete (io/safetensors.cpp).
 * Only the lease holder writes there, so nothing else is writing one now.
 */
async function removeUnfinishedWrites(workDir: string): Promise<void> {
  for (const dir of [workDir, path.join(workDir, 'checkpoints')]) {
    const names = await fs.readdir(dir).catch(() => [] as string[]);
    await Promise.all(names.filter((name) => /\.tmp-\d+-\d+$/.test(name)).map((name) => fs.rm(path.join(dir, name), { force: true })));
  }
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
    rank: params.rank,
    alpha: params.alpha,
    modules: keys.length,
    components,
  };
}

export class TrainingWorker extends JobRunner<TrainingRunRow> {
  readonly #options: TrainingWorkerOptions;

  constructor(options: TrainingWorkerOptions) {
    super({
      kind: 'training run',
      queue: createTrainingRunsRepository(options.db),
      logger: options.logger,
      slots: options.slots,
      leaseMs: options.leaseMs,
      heartbeatMs: options.heartbeatMs,
      pollMs: options.pollMs,
    });
    this.#options = options;
  }

  /** Prior preservation: the class images the run trains on beside its own (made now when not cached). */
  async #classImages(run: TrainingRunRow, params: ResolvedTrainingParams, reporter: TrainingRunReporter, signal: AbortSignal) {
    // Resolved: every field filled (resolveTrainingParams).
    const prior = params.prior_preservation as PriorPreservationParams | null;
    if (prior === null) return [];
    const prompt = prior.class_prompt ?? `a photo of ${run.class_word}`;
    const { images, made } = await this.#options.classImages.ensure(
      { modelId: run.model_id, prompt, resolution: params.resolution, count: prior.num_class_images },
      signal,
    );
    reporter.log(`class images for prior preservation: ${images.length - made} reused, ${made} made ("${prompt}", ${params.resolution}px)`);
    const sources = [];
    for (const image of images) {
      const data = await this.#options.blobs.get(image.sha256);
      if (data === null) throw new Error(`class image ${image.seed} is missing from storage`);
      sources.push({ name: `class-${image.seed}.png`, caption: prompt, data });
    }
    return sources;
  }

  protected async runJob(run: TrainingRunRow, controller: AbortController): Promise<void> {
    const { db, logger, files, bus } = this.#options;
    const runs = createTrainingRunsRepository(db);
    const log = logger.child({ run: run.id, tenant: run.tenant_id });
    const owner = this.owner;
    const params = storedTrainingParams(run.params);
    const workDir = await files.workDir(run.id);
    const reporter = new TrainingRunReporter({
      db, files, bus, logger: log, runId: run.id, owner, workDir, totalSteps: params.max_steps,
      redactions: [[workDir + path.sep, ''], [workDir, '.']],
    });
    const end = async (status: 'succeeded' | 'failed' | 'canceled', outcome?: Parameters<typeof runs.finish>[3]) => {
      await reporter.settled();
      await runs.finish(run.id, owner, status, outcome);
      bus.notify(run.id);
    };
    bus.notify(run.id); // the claim recorded a status event (starting): wake this replica's streams
    if (run.cancel_requested_at !== null) {
      await end('canceled'); // canceled while its worker was dead
      return;
    }
    if (run.interruptions >= this.#options.maxAttempts) {
      reporter.log(`giving up: interrupted ${run.interruptions} times, TRAINING_MAX_ATTEMPTS is ${this.#options.maxAttempts}`, 'error');
      const message = `The run's process died ${run.interruptions} times while training it, and it is not tried again`;
      await end('failed', { error: { code: 'attempts_exhausted', message } });
      return;
    }
    let result: TrainResult;
    try {
      const model = await this.#options.models.get(run.model_id);
      reporter.redact(model.modelPath, run.model_id);
      const snapshot = await runs.images(run.id);
      const images = [];
      for (const image of snapshot) {
        const bytes = await this.#options.blobs.get(image.sha256);
        if (bytes === null) throw new Error(`the bytes of image ${image.image_id} are missing from storage`);
        images.push({ name: image.original_filename ?? image.image_id, caption: image.caption, data: bytes });
      }
      const classImages = await this.#classImages(run, params, reporter, controller.signal);
      if (run.attempt > 1) await removeUnfinishedWrites(workDir);
      const resumeFrom = run.attempt > 1 ? await latestCheckpoint(workDir) : undefined;
      reporter.log(
        resumeFrom === undefined
          ? `attempt ${run.attempt} on ${this.#options.device} (worker ${owner}): ${images.length} images, ${params.max_steps} steps`
          : `attempt ${run.attempt} on ${this.#options.device} (worker ${owner}): resuming from ${path.relative(workDir, resumeFrom)}`,
      );
      log.info({ attempt: run.attempt, resumeFrom }, resumeFrom === undefined ? 'training run started' : 'training run resumed');

      const job = train({
        modelPath: model.modelPath,
        ...(model.configDir === undefined ? {} : { configDir: model.configDir }),
        device: this.#options.device,
        images,
        classImages,
        outputDir: workDir,
        triggerPhrase: run.trigger_token,
        ...trainConfigFields(params),
        ...(resumeFrom === undefined ? {} : { resumeFrom }),
        metadata: {
          ...run.metadata,
          'sdxl_lora_service.run_id': run.id,
          'sdxl_lora_service.base_model': run.model_id,
          'sdxl_lora_service.dataset_id': run.dataset_id,
          'sdxl_lora_service.dataset_hash': datasetHash(snapshot),
        },
      });
      controller.signal.addEventListener('abort', () => job.cancel(), { once: true });
      if (controller.signal.aborted) job.cancel(); // aborted while the images were read
      const meter = this.#options.metrics?.trainingRun();
      job.onProgress((report) => {
        reporter.report(report);
        meter?.report(report);
      });
      try {
        result = await job.promise;
      } finally {
        meter?.end();
      }
    } catch (error) {
      const reason = stopReason(controller.signal);
      if (reason === 'lease-lost') return;
      if (reason === 'shutdown') {
        await reporter.settled();
        await runs.release(run.id, owner); // stopped before its first checkpoint: it starts again elsewhere
        return;
      }
      if (reason === 'canceled') {
        reporter.log('canceled before training started');
        await end('canceled');
        return;
      }
      const message = error instanceof Error ? error.message : String(error);
      reporter.log(`failed: ${message}`, 'error');
      await end('failed', { error: { code: 'training_failed', message } });
      log.warn({ err: error }, 'training run failed');
      return;
    }

    const metrics = { steps: result.steps, ...result.metrics };
    switch (stopReason(controller.signal)) {
      case 'lease-lost':
        log.warn('training run lease lost to another worker; leaving the run to it');
        return;
      case 'shutdown':
        reporter.log(`stopped at step ${result.steps} (the process is shutting down); handed back to the queue to resume`, 'warn');
        await reporter.settled();
        await runs.release(run.id, owner);
        bus.notify(run.id);
        log.info({ checkpoint: result.checkpointPath }, 'training run checkpointed and handed back (shutting down)');
        return;
      case 'canceled':
        reporter.log(`canceled at step ${result.steps}`);
        await end('canceled', { metrics });
        log.info('training run canceled');
        return;
      default: {
        reporter.log(`succeeded: ${result.steps} steps`);
        await reporter.settled();
        const loraPath = result.loraPath;
        if (loraPath === undefined) throw new Error('the trainer succeeded without a LoRA file');
        const bytes = await fs.readFile(loraPath);
        const lora = describeTrainedLora(bytes, run, params);
        // The run succeeds and its LoRA becomes a resource in one transaction (the file is a
        // blob, written under its lock as uploads are: services/images.ts).
        await db.transaction(async (tx) => {
          await createImagesRepository(tx).lockBlob(lora.sha256);
          await this.#options.blobs.put(bytes);
          if (await createTrainingRunsRepository(tx).finish(run.id, owner, 'succeeded', { metrics })) {
            await LorasService.registerFromRun(tx, run.tenant_id, lora);
          }
        });
        bus.notify(run.id);
        log.info({ steps: result.steps }, 'training run succeeded');
      }
    }
  }
}
