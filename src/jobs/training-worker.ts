// The background runner of training runs, one per process, on the shared JobRunner
// (job-runner.ts). A claimed run trains on the native trainer's own thread, writing into
// its work folder of the run file store; training-run-reporter.ts turns the trainer's
// reports into progress, events, log lines and published artifacts. A run whose
// process died is claimed again once its lease runs out and resumes from its latest
// checkpoint (attempt + 1). A cancel stops it at the next step with a checkpoint written;
// on shutdown the run is checkpointed the same way and handed back to the queue.
//
// The worker owns its training devices (device-pool.ts): a run asks params.devices of them
// and is claimed only when that many are free; with two or more it trains data parallel, one
// rank per device. On every poll the worker records its devices and how many are free
// (training_workers), so runs asking more than any worker has are refused and queued runs
// can say what they wait for.
//
// What a succeeded run leaves (its LoRA, or with method full its model) becomes the
// tenant's through services/training-results.ts; a full run's model files are published as
// artifacts before that.
import type { FastifyBaseLogger } from 'fastify';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { train, type TrainImageSource, type TrainResult } from '../engine/index.js';
import type { Database } from '../db/database.js';
import { isDatabaseUnavailable, retryWhileUnavailable } from '../db/unavailable.js';
import { isDiskFull } from '../storage/disk-space.js';
import type { ServiceMetrics } from '../metrics/service-metrics.js';
import { createTrainingRunsRepository, type TrainingRunImage, type TrainingRunRow } from '../repositories/training-runs.js';
import { createTrainingWorkersRepository } from '../repositories/training-workers.js';
import { storedTrainingParams, trainConfigFields, type PriorPreservationParams, type ResolvedTrainingParams } from '../schemas/training-params.js';
import type { ClassImagesService } from '../services/class-images.js';
import type { QualityMetricsService } from '../services/quality-metrics.js';
import { MODEL_OUTPUT_NAME, MODEL_OUTPUT_NAMES, type ModelsService, type ResolvedModel } from '../services/models.js';
import type { RunEventsBus } from '../services/run-events-bus.js';
import { splitHeldOut } from '../services/training-data-plan.js';
import { TrainingResultsService } from '../services/training-results.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { RunFileStore } from '../storage/run-file-store.js';
import type { TrainingDevices } from '../plugins/device.js';
import { DevicePool } from './device-pool.js';
import { JobRunner, stopReason } from './job-runner.js';
import { TrainingRunReporter } from './training-run-reporter.js';

export interface TrainingWorkerOptions {
  db: Database;
  models: ModelsService;
  blobs: BlobStore;
  /** Prior preservation's class images (made on the resident models, cached). */
  classImages: ClassImagesService;
  /** The trainer's latent and prompt-embedding caches, a folder per model under it (DATA_DIR/cache/training). */
  cacheDir: string;
  /** Each run's files: the trainer writes them into the run's work folder and they are published from there. */
  files: RunFileStore;
  bus: RunEventsBus;
  logger: FastifyBaseLogger;
  /** The devices it trains on ("cpu", "cuda" or "cuda:N"), how many runs each takes, and the runs at once. */
  devices: TrainingDevices;
  /** Tries of one run whose process died before it fails (a graceful hand-back is not counted). */
  maxAttempts: number;
  leaseMs: number;
  heartbeatMs: number;
  pollMs: number;
  /** Step times, throughput and loss for /metrics. */
  metrics?: ServiceMetrics;
  /** Where the quality metrics' networks are (METRICS_MODELS_DIR); absent: every metric a run asks is reported unavailable. */
  qualityMetrics?: QualityMetricsService;
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

/** The devices a run asks (runs stored before params.devices asked one). */
function devicesOf(run: TrainingRunRow): number {
  return storedTrainingParams(run.params).devices;
}

export class TrainingWorker extends JobRunner<TrainingRunRow> {
  readonly #options: TrainingWorkerOptions;
  readonly #results: TrainingResultsService;
  readonly #pool: DevicePool;
  #seenTimer: NodeJS.Timeout | undefined;
  /** The last write of this worker's row: writes follow each other, so the newest figures land last. */
  #seen: Promise<void> = Promise.resolve();

  constructor(options: TrainingWorkerOptions) {
    const pool = new DevicePool(options.devices.devices, options.devices.runsPerDevice);
    super({
      kind: 'training run',
      queue: createTrainingRunsRepository(options.db),
      logger: options.logger,
      slots: options.devices.slots,
      leaseMs: options.leaseMs,
      heartbeatMs: options.heartbeatMs,
      pollMs: options.pollMs,
      capacity: {
        free: () => pool.free(),
        take: (run) => {
          pool.take(run.id, devicesOf(run));
          this.#recordSeen();
        },
        give: (run) => {
          pool.give(run.id);
          this.#recordSeen();
        },
      },
    });
    this.#options = options;
    this.#pool = pool;
    this.#results = new TrainingResultsService({ db: options.db, blobs: options.blobs, files: options.files });
  }

  /** The devices of this worker, for /metrics. */
  get devicePool(): DevicePool {
    return this.#pool;
  }

  /** Starts claiming, and records this worker's devices on every poll. */
  override start(): void {
    super.start();
    if (this.#seenTimer !== undefined) return;
    this.#recordSeen();
    this.#seenTimer = setInterval(() => this.#recordSeen(), this.#options.pollMs);
    this.#seenTimer.unref();
  }

  /** Stops as JobRunner.stop does, then takes this worker's row away: it takes no more runs. */
  override async stop(): Promise<void> {
    clearInterval(this.#seenTimer);
    this.#seenTimer = undefined;
    await super.stop();
    await this.#seen;
    await createTrainingWorkersRepository(this.#options.db).gone(this.owner)
      .catch((error: unknown) => this.#options.logger.warn({ err: error }, 'could not remove this training worker\'s row'));
  }

  /** Writes this worker's devices and how many are free (none while every slot is taken). */
  #recordSeen(): void {
    this.#seen = this.#seen
      .then(() => {
        // Read when written: a claim or an end that asked for this write has settled by now.
        const free = this.runningJobs().length < this.#options.devices.slots ? this.#pool.free() : 0;
        return createTrainingWorkersRepository(this.#options.db).seen(this.owner, this.#pool.size, free);
      })
      .catch((error: unknown) => this.#options.logger.warn({ err: error }, 'could not record this training worker\'s devices'));
  }

  /**
   * The snapshot images as the engine takes them: named by their hash and sized, their bytes read only when the
   * trainer must encode one (its cache lacks it). Snapshots taken before they recorded sizes are read now.
   */
  async #trainImages(snapshot: TrainingRunImage[]): Promise<TrainImageSource[]> {
    const images: TrainImageSource[] = [];
    for (const image of snapshot) {
      const read = async () => {
        const bytes = await this.#options.blobs.get(image.sha256);
        if (bytes === null) throw new Error(`the bytes of image ${image.image_id} are missing from storage`);
        return bytes;
      };
      const named = { name: image.original_filename ?? image.image_id, caption: image.caption, key: image.sha256 };
      images.push(image.width === null || image.height === null
        ? { ...named, data: await read() }
        : { ...named, read, width: image.width, height: image.height });
    }
    return images;
  }

  /** Prior preservation: the class images the run trains on beside its own (made now when not cached). */

  async #classImages(run: TrainingRunRow, params: ResolvedTrainingParams, reporter: TrainingRunReporter, signal: AbortSignal) {
    // Resolved: every field filled (resolveTrainingParams).
    const prior = params.prior_preservation as PriorPreservationParams | null;
    if (prior === null) return [];
    const prompt = prior.class_prompt ?? `a photo of ${run.class_word}`;
    const { images, made } = await this.#options.classImages.ensure(
      { tenantId: run.tenant_id, modelId: run.model_id, prompt, resolution: params.resolution, count: prior.num_class_images },
      signal,
    );
    reporter.log(`class images for prior preservation: ${images.length - made} reused, ${made} made ("${prompt}", ${params.resolution}px)`);
    const sources = [];
    for (const image of images) {
      const data = await this.#options.blobs.get(image.sha256);
      if (data === null) throw new Error(`class image ${image.seed} is missing from storage`);
      sources.push({ name: `class-${image.seed}.png`, caption: prompt, data, key: image.sha256 });
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
    const full = params.method === 'full';
    // Claimed with its devices (the capacity's take); rank 0's device reports the memory.
    const devices = this.#pool.of(run.id);
    const device = devices[0]!;
    const onDevices = devices.length > 1 ? `${devices.length} devices (${devices.join(', ')})` : device;
    const reporter = new TrainingRunReporter({
      db, files, bus, logger: log, runId: run.id, owner, workDir, totalSteps: params.max_steps, device, devices: devices.length,
      ...(full ? { unreported: MODEL_OUTPUT_NAMES } : {}),
      redactions: [[workDir + path.sep, ''], [workDir, '.']],
    });
    // The run's last writes wait out a database outage (as its reports do) rather than lose how it ended.
    const settle = <T>(write: () => Promise<T>) => retryWhileUnavailable(write, () => log.warn('the database is unavailable: the run\'s end waits for it'));
    const end = async (status: 'succeeded' | 'failed' | 'canceled', outcome?: Parameters<typeof runs.finish>[3]) => {
      await reporter.settled();
      await settle(() => runs.finish(run.id, owner, status, outcome));
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
    let model: ResolvedModel;
    try {
      model = await this.#options.models.get(run.tenant_id, run.model_id);
      reporter.redact(model.modelPath, run.model_id);
      const snapshot = await runs.images(run.id);
      // The split is recomputed from the stored share and the images' hashes: the same on every attempt.
      const split = splitHeldOut(snapshot, params.validation_split);
      const images = await this.#trainImages(split.training);
      const validationImages = await this.#trainImages(split.heldOut);
      const classImages = await this.#classImages(run, params, reporter, controller.signal);
      if (run.attempt > 1) {
        await removeUnfinishedWrites(workDir);
        // A full run that died while saving or publishing its model writes it again from its checkpoint.
        if (full) await this.#results.discardModel(run.id);
      }
      const resumeFrom = run.attempt > 1 ? await latestCheckpoint(workDir) : undefined;
      reporter.log(
        resumeFrom === undefined
          ? `attempt ${run.attempt} on ${onDevices} (worker ${owner}): ${images.length} images` +
            `${validationImages.length > 0 ? ` (${validationImages.length} more held out)` : ''}, ${params.max_steps} steps`
          : `attempt ${run.attempt} on ${onDevices} (worker ${owner}): resuming from ${path.relative(workDir, resumeFrom)}`,
      );
      log.info({ attempt: run.attempt, resumeFrom }, resumeFrom === undefined ? 'training run started' : 'training run resumed');

      const job = train({
        modelPath: model.modelPath,
        ...(model.configDir === undefined ? {} : { configDir: model.configDir }),
        device,
        // Two or more: data parallel, one rank per device.
        ...(devices.length > 1 ? { devices } : {}),
        images,
        classImages,
        validationImages,
        outputDir: workDir,
        // One folder per model: later runs on the same images reuse what this one encodes.
        cacheDir: path.join(this.#options.cacheDir, encodeURIComponent(run.model_id)),
        ...(full ? { outputName: MODEL_OUTPUT_NAME } : {}),
        triggerPhrase: run.trigger_token,
        ...trainConfigFields(params),
        metricsModelsDir: this.#options.qualityMetrics?.engineModelsDir ?? '',
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
      const meter = this.#options.metrics?.trainingRun(run.id);
      job.onProgress((report) => {
        reporter.report(report);
        meter?.report(report);
      });
      try {
        result = await job.promise;
      } finally {
        meter?.end();
      }
      if (params.keep_checkpoints > 0) reporter.forgetRemovedCheckpoints();
    } catch (error) {
      const reason = stopReason(controller.signal);
      if (reason === 'lease-lost') return;
      // Stopped before its first checkpoint (shutting down), or its inputs could not be read
      // (the database is away): not the run's failure; it starts again once claimed.
      if (reason === 'shutdown' || isDatabaseUnavailable(error)) {
        if (reason !== 'shutdown') log.warn({ err: error }, 'the database is unavailable: the run is handed back to the queue');
        await reporter.settled();
        await settle(() => runs.release(run.id, owner));
        return;
      }
      if (reason === 'canceled') {
        reporter.log('canceled before training started');
        await end('canceled');
        return;
      }
      const message = error instanceof Error ? error.message : String(error);
      reporter.log(`failed: ${message}`, 'error');
      // A full disk: the file being written was removed and the checkpoints before it are whole.
      await end('failed', { error: { code: isDiskFull(error) ? 'disk_full' : 'training_failed', message } });
      log.warn({ err: error }, 'training run failed');
      return;
    }

    // What the run needed on its device: the trainer's figure, else the most its reports said.
    const peak = result.metrics.peak_memory_bytes ?? (reporter.peakMemoryBytes > 0 ? reporter.peakMemoryBytes : undefined);
    const metrics = { steps: result.steps, devices: devices.length, ...result.metrics, ...(peak === undefined ? {} : { peak_memory_bytes: peak }) };
    switch (stopReason(controller.signal)) {
      case 'lease-lost':
        log.warn('training run lease lost to another worker; leaving the run to it');
        return;
      case 'shutdown':
        reporter.log(`stopped at step ${result.steps} (the process is shutting down); handed back to the queue to resume`, 'warn');
        await reporter.settled();
        await settle(() => runs.release(run.id, owner));
        bus.notify(run.id);
        log.info({ checkpoint: result.checkpointPath }, 'training run checkpointed and handed back (shutting down)');
        return;
      case 'canceled':
        reporter.log(`canceled at step ${result.steps}`);
        await end('canceled', { metrics });
        log.info('training run canceled');
        return;
      default: {
        if (full) {
          try {
            await this.#registerModel(run, params, model, result, reporter, metrics);
          } catch (error) {
            const message = error instanceof Error ? error.message : String(error);
            reporter.log(`failed: the trained model could not be registered: ${message}`, 'error');
            await end('failed', { error: { code: 'model_registration_failed', message }, metrics });
            log.warn({ err: error }, 'training run failed: the trained model could not be registered');
          }
          return;
        }
        reporter.log(`succeeded: ${result.steps} steps`);
        await reporter.settled();
        if (result.loraPath === undefined) throw new Error('the trainer succeeded without a LoRA file');
        const loraPath = result.loraPath;
        await settle(() => this.#results.completeLoraRun(run, owner, params, loraPath, metrics));
        bus.notify(run.id);
        log.info({ steps: result.steps }, 'training run succeeded');
      }
    }
  }

  /** A full run's end: its model's files published, then the model registered as the tenant's. */
  async #registerModel(
    run: TrainingRunRow,
    params: ResolvedTrainingParams,
    base: ResolvedModel,
    result: TrainResult,
    reporter: TrainingRunReporter,
    metrics: Record<string, number>,
  ): Promise<void> {
    const model = await this.#results.prepareModel(run, base, result);
    await reporter.publishNow(result.steps, model.outputs);
    const storedBytes = await this.#results.storedModelBytes(run.id);
    reporter.log(`succeeded: ${result.steps} steps; the model keeps ${storedBytes} bytes`);
    await reporter.settled();
    const registered = await retryWhileUnavailable(() => this.#results.completeModelRun(run, this.owner, model, storedBytes, metrics));
    this.#options.bus.notify(run.id);
    this.#options.logger.info({ run: run.id, tenant: run.tenant_id, model: registered, steps: result.steps, storedBytes, method: params.method }, 'training run succeeded');
  }
}
