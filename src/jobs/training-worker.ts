// The background runner of training runs, one per process, on the shared JobRunner
// (job-runner.ts). A claimed run trains on the native trainer's own thread, writing
// under <runsDir>/<run id>/; progress goes to the run at most once a second. A run whose
// process died is claimed again once its lease runs out and resumes from its latest
// checkpoint (attempt + 1). A cancel stops it at the next step with a checkpoint written;
// on shutdown the run is checkpointed the same way and handed back to the queue.
import type { FastifyBaseLogger } from 'fastify';
import fs from 'node:fs/promises';
import path from 'node:path';
import { train, type Progress, type TrainResult } from '../engine/index.js';
import type { Database } from '../db/database.js';
import { createTrainingRunsRepository, type TrainingRunRow } from '../repositories/training-runs.js';
import { trainConfigFields, type ResolvedTrainingParams } from '../schemas/training-params.js';
import type { ModelsService } from '../services/models.js';
import type { BlobStore } from '../storage/blob-store.js';
import { JobRunner, stopReason } from './job-runner.js';

export const PROGRESS_INTERVAL_MS = 1_000;

export interface TrainingWorkerOptions {
  db: Database;
  models: ModelsService;
  blobs: BlobStore;
  /** Where each run's files go: <runsDir>/<run id>/. */
  runsDir: string;
  logger: FastifyBaseLogger;
  /** "cpu", "cuda" or "cuda:N". */
  device: string;
  slots: number;
  leaseMs: number;
  heartbeatMs: number;
  pollMs: number;
}

/** The newest checkpoint of a run's earlier attempts, if any (the trainer names them step-NNNNNN). */
async function latestCheckpoint(outputDir: string): Promise<string | undefined> {
  const dir = path.join(outputDir, 'checkpoints');
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  const latest = names.filter((name) => /^step-\d+\.safetensors$/.test(name)).sort().at(-1);
  return latest === undefined ? undefined : path.join(dir, latest);
}

/** The public progress of a run, from one trainer report. */
function runProgress(report: Progress, totalSteps: number): Record<string, unknown> {
  const training = report.phase === 'training';
  const metric = (name: string) => (Number.isFinite(report.metrics[name]) ? report.metrics[name] : null);
  return {
    phase: report.phase,
    step: training ? report.step : 0,
    total_steps: totalSteps,
    percent: training && totalSteps > 0 ? Math.round((1000 * report.step) / totalSteps) / 10 : 0,
    loss: metric('loss'),
    loss_avg: metric('loss_avg'),
    lr: metric('lr'),
    images_per_s: metric('images_per_s'),
    eta_seconds: metric('eta_s'),
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

  protected async runJob(run: TrainingRunRow, controller: AbortController): Promise<void> {
    const { db, logger } = this.#options;
    const runs = createTrainingRunsRepository(db);
    const log = logger.child({ run: run.id, tenant: run.tenant_id });
    const owner = this.owner;
    if (run.cancel_requested_at !== null) {
      await runs.finish(run.id, owner, 'canceled'); // canceled while its worker was dead
      return;
    }
    let result: TrainResult;
    try {
      const model = await this.#options.models.get(run.model_id);
      const images = [];
      for (const image of await runs.images(run.id)) {
        const bytes = await this.#options.blobs.get(image.sha256);
        if (bytes === null) throw new Error(`the bytes of image ${image.image_id} are missing from storage`);
        images.push({ name: image.original_filename ?? image.image_id, caption: image.caption, data: bytes });
      }
      const outputDir = path.join(this.#options.runsDir, run.id);
      const resumeFrom = run.attempt > 1 ? await latestCheckpoint(outputDir) : undefined;
      const params = run.params as unknown as ResolvedTrainingParams;
      log.info({ attempt: run.attempt, resumeFrom }, run.attempt > 1 ? 'training run resumed' : 'training run started');

      const job = train({
        modelPath: model.modelPath,
        ...(model.configDir === undefined ? {} : { configDir: model.configDir }),
        device: this.#options.device,
        images,
        outputDir,
        triggerPhrase: run.trigger_token,
        ...trainConfigFields(params),
        ...(resumeFrom === undefined ? {} : { resumeFrom }),
        metadata: { ...run.metadata, 'sdxl_lora_service.run_id': run.id, 'sdxl_lora_service.base_model': run.model_id },
      });
      controller.signal.addEventListener('abort', () => job.cancel(), { once: true });
      if (controller.signal.aborted) job.cancel(); // aborted while the images were read
      let lastWrite = 0;
      let status: 'starting' | 'running' = 'starting';
      job.onProgress((report) => {
        const now = Date.now();
        const started = report.phase === 'training' && status === 'starting';
        if (!started && now - lastWrite < PROGRESS_INTERVAL_MS) return;
        lastWrite = now;
        if (started) status = 'running';
        runs.progress(run.id, owner, runProgress(report, params.max_steps), status).catch((error: unknown) => {
          log.warn({ err: error }, 'could not record training progress');
        });
      });
      result = await job.promise;
    } catch (error) {
      const reason = stopReason(controller.signal);
      if (reason === 'lease-lost') return;
      if (reason === 'shutdown') {
        await runs.release(run.id, owner); // stopped before its first checkpoint: it starts again elsewhere
        return;
      }
      if (reason === 'canceled') {
        await runs.finish(run.id, owner, 'canceled');
        return;
      }
      const message = error instanceof Error ? error.message : String(error);
      await runs.finish(run.id, owner, 'failed', { error: { code: 'training_failed', message } });
      log.warn({ err: error }, 'training run failed');
      return;
    }

    switch (stopReason(controller.signal)) {
      case 'lease-lost':
        log.warn('training run lease lost to another worker; leaving the run to it');
        return;
      case 'shutdown':
        await runs.release(run.id, owner);
        log.info({ checkpoint: result.checkpointPath }, 'training run checkpointed and handed back (shutting down)');
        return;
      case 'canceled':
        await runs.finish(run.id, owner, 'canceled', { metrics: { steps: result.steps, ...result.metrics } });
        log.info('training run canceled');
        return;
      default:
        await runs.finish(run.id, owner, 'succeeded', { metrics: { steps: result.steps, ...result.metrics } });
        log.info({ steps: result.steps }, 'training run succeeded');
    }
  }
}
