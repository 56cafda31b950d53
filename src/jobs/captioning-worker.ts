// The background runner of captioning jobs, one per process, on the shared JobRunner
// (job-runner.ts: claims with FOR UPDATE SKIP LOCKED, leases, heartbeats, hand-back). It
// captions a job's images with at most CAPTION_CONCURRENCY requests in flight, and stops
// a job within one heartbeat of a cancel (at once when the cancel arrives at this
// process). On close it aborts its requests, puts unfinished images back in the queue and
// releases its jobs, so the next process to start (or another replica) resumes them.
// A job in batch mode sends its images through the provider's batch API instead
// (caption-batch-run.ts); its batches in flight stay in flight across a restart.
//
// Never lose work: each image's caption is committed as soon as it is answered, a
// provider's answer goes to the cache before anything else, and one image's failure
// leaves the others alone.
import type { FastifyBaseLogger } from 'fastify';
import { Type } from 'typebox';
import { CaptionError, type Captioner, type CaptionerRegistry, type CaptionProvider, type CaptionSubject } from '../captioning/captioner.js';
import type { Database } from '../db/database.js';
import { createCaptioningJobsRepository, type JobRow } from '../repositories/captioning-jobs.js';
import { createCaptionsRepository, type CaptionSource } from '../repositories/captions.js';
import type { CaptionsService } from '../services/captions.js';
import type { BlobStore } from '../storage/blob-store.js';
import { abandonBatches, captionInBatches, type BatchRunPolicy } from './caption-batch-run.js';
import { CaptionItems } from './caption-items.js';
import { forEachLimited } from './for-each-limited.js';
import { DEFAULT_HEARTBEAT_MS, DEFAULT_LEASE_MS, DEFAULT_POLL_MS, JobRunner, stopReason, type StopReason } from './job-runner.js';

export { DEFAULT_HEARTBEAT_MS, DEFAULT_LEASE_MS, DEFAULT_POLL_MS } from './job-runner.js';
/** Jobs one process runs side by side (each with its own CAPTION_CONCURRENCY). */
export const DEFAULT_MAX_JOBS = 2;

/** Environment variables of the worker, merged into the service's EnvSchema by src/config.ts (README "Configuration"). */
export const CaptionWorkerEnvProperties = {
  /** Captioning jobs this process runs side by side; 0 runs none here (another replica must). */
  CAPTION_WORKER_JOBS: Type.Integer({ minimum: 0, maximum: 64, default: DEFAULT_MAX_JOBS }),
};

/** What src/config.ts keeps of the worker's variables, as Config['captionWorker']. */
export interface CaptionWorkerConfig {
  /** 0 = the worker does not start. */
  maxJobs: number;
}

export interface CaptioningWorkerOptions {
  db: Database;
  captioners: CaptionerRegistry;
  captions: CaptionsService;
  blobs: BlobStore;
  logger: FastifyBaseLogger;
  /** Most caption requests in flight at once per job. */
  concurrency: number;
  /** Jobs in batch mode: batch size, polling, retry budget. */
  batch: BatchRunPolicy;
  maxJobs?: number;
  leaseMs?: number;
  heartbeatMs?: number;
  pollMs?: number;
}

interface JobRun {
  job: JobRow;
  captioner: Captioner;
  subject: CaptionSubject;
  controller: AbortController;
  items: CaptionItems;
  /** The error that stopped the job (an API key the provider refused). */
  fatal?: CaptionError;
  /** Why the consistency pass failed, when it did. */
  consistencyError?: CaptionError;
}

export class CaptioningWorker extends JobRunner<JobRow> {
  readonly #options: Required<CaptioningWorkerOptions>;

  constructor(options: CaptioningWorkerOptions) {
    const resolved: Required<CaptioningWorkerOptions> = {
      maxJobs: DEFAULT_MAX_JOBS,
      leaseMs: DEFAULT_LEASE_MS,
      heartbeatMs: DEFAULT_HEARTBEAT_MS,
      pollMs: DEFAULT_POLL_MS,
      ...options,
    };
    super({
      kind: 'captioning job',
      queue: createCaptioningJobsRepository(resolved.db),
      logger: resolved.logger,
      slots: resolved.maxJobs,
      leaseMs: resolved.leaseMs,
      heartbeatMs: resolved.heartbeatMs,
      pollMs: resolved.pollMs,
    });
    this.#options = resolved;
  }

  protected async runJob(job: JobRow, controller: AbortController): Promise<void> {
    const { db, logger } = this.#options;
    const jobs = createCaptioningJobsRepository(db);
    const log = logger.child({ job: job.id, tenant: job.tenant_id });
    log.info({ dataset: job.dataset_id, provider: job.provider, claims: job.claims }, job.claims > 1 ? 'captioning job resumed' : 'captioning job started');

    if (job.cancel_requested_at !== null) {
      // Canceled while its worker was dead.
      await abandonBatches({ db, job, logger: log }, this.#options.captioners.get(job.provider as CaptionProvider)?.batches);
      await jobs.cancelOpenItems(job.id);
      await jobs.finish(job.id, this.owner, 'canceled');
      log.info('captioning job canceled');
      return;
    }
    const captioner = this.#options.captioners.get(job.provider as CaptionProvider);
    if (captioner === undefined) {
      const message = `provider ${job.provider} is not configured on the process that ran the job`;
      await abandonBatches({ db, job, logger: log }, undefined);
      await jobs.requeueRunningItems(job.id);
      await jobs.failQueuedItems(job.id, 'provider_not_configured', message);
      await jobs.finish(job.id, this.owner, 'failed', { code: 'provider_not_configured', message });
      log.warn({ provider: job.provider }, 'captioning job failed: provider not configured');
      return;
    }
    const subject: CaptionSubject = { trigger: job.trigger_token, classWord: job.class_word, ...(job.style_hint !== null ? { styleHint: job.style_hint } : {}) };
    const { captions, blobs } = this.#options;
    const items = new CaptionItems({ db, blobs, captions, logger: log, owner: this.owner, job, captioner, subject, controller });
    const run: JobRun = { job, captioner, controller, subject, items };

    // A provider that lost its batch API since the job was created (configuration changed) answers one request per image.
    const batchApi = job.mode === 'batch' ? captioner.batches : undefined;
    if (job.mode === 'batch' && batchApi === undefined) await abandonBatches({ db, job, logger: log }, undefined);
    // Images a dead worker had in flight are tried again (those a batch carries are on the way).
    await jobs.requeueRunningItems(job.id);
    try {
      if (batchApi !== undefined) {
        await captionInBatches({
          db, blobs, captions, logger: log, owner: this.owner, job, captioner, subject, controller, items,
          batches: batchApi,
          policy: this.#options.batch,
          concurrency: this.#options.concurrency,
          fatal: (error) => this.#fatal(run, error),
        });
      } else {
        const queued = await jobs.queuedItems(job.id);
        await forEachLimited(queued, this.#options.concurrency, controller.signal, (imageId) => this.#runItem(run, imageId));
      }
    } catch (error) {
      // The database failed under us: stop the other lanes; the lease expires and a worker resumes the job.
      controller.abort('lease-lost' satisfies StopReason);
      throw error;
    }

    if (!controller.signal.aborted && job.consistency_pass) {
      const failed = (await jobs.progress([job.id])).get(job.id)!.failed;
      if (failed === 0) await this.#consistencyPass(run);
    }
    await this.#conclude(run);
  }

  /** Settles the job from how its run ended. */
  async #conclude(run: JobRun): Promise<void> {
    const { job, controller } = run;
    const jobs = createCaptioningJobsRepository(this.#options.db);
    const log = this.#options.logger.child({ job: job.id, tenant: job.tenant_id });
    switch (stopReason(controller.signal)) {
      case 'shutdown':
        await jobs.requeueRunningItems(job.id);
        await jobs.release(job.id, this.owner);
        log.info('captioning job released for another process (shutting down)');
        return;
      case 'lease-lost':
        log.warn('captioning job lease lost to another worker; leaving the job to it');
        return;
      case 'canceled':
        await abandonBatches({ db: this.#options.db, job, logger: log }, run.captioner.batches);
        await jobs.cancelOpenItems(job.id);
        await jobs.finish(job.id, this.owner, 'canceled');
        log.info('captioning job canceled');
        return;
      case 'fatal': {
        const fatal = run.fatal!;
        await abandonBatches({ db: this.#options.db, job, logger: log }, run.captioner.batches);
        await jobs.requeueRunningItems(job.id);
        await jobs.failQueuedItems(job.id, fatal.code, `not attempted: ${fatal.message}`);
        await jobs.finish(job.id, this.owner, 'failed', { code: fatal.code, message: fatal.message });
        log.warn({ code: fatal.code }, 'captioning job failed');
        return;
      }
      case undefined: {
        const progress = (await jobs.progress([job.id])).get(job.id)!;
        const consistency = run.consistencyError;
        if (consistency !== undefined) {
          await jobs.finish(job.id, this.owner, 'failed', { code: consistency.code, message: `consistency pass failed: ${consistency.message}` });
        } else if (progress.failed > 0) {
          await jobs.finish(job.id, this.owner, 'failed', { code: 'images_failed', message: `${progress.failed} of ${progress.total} images failed; see errors` });
        } else {
          await jobs.finish(job.id, this.owner, 'succeeded');
        }
        log.info({ ...progress }, 'captioning job finished');
      }
    }
  }

  /** Captions one image: from the cache when possible, else with one provider request (retried inside). */
  async #runItem(run: JobRun, imageId: string): Promise<void> {
    const { job, captioner, subject, controller, items } = run;
    const signal = controller.signal;
    if (!(await createCaptioningJobsRepository(this.#options.db).startItem(job.id, this.owner, imageId))) return;
    try {
      const found = await items.lookup(imageId);
      if (found.settled) return;
      await items.record(imageId, found.key, await captioner.caption(found.image, subject, signal));
    } catch (error) {
      const reason = stopReason(signal);
      if (reason !== undefined && reason !== 'fatal') {
        // #conclude settles the item: canceled, or back to the queue for the next process.
        return;
      }
      if (error instanceof CaptionError) {
        if (error.code === 'canceled' && reason === 'fatal') return;
        await items.finish(imageId, { status: 'failed', error: { code: error.code, message: error.message, attempts: error.attempts, httpStatus: error.status ?? null } });
        this.#options.logger.warn({ job: job.id, image: imageId, code: error.code, status: error.status, attempts: error.attempts }, 'image caption failed');
        if (error.code === 'auth') this.#fatal(run, error);
        return;
      }
      this.#options.logger.error({ err: error, job: job.id, image: imageId }, 'image caption failed unexpectedly');
      await items.finish(imageId, { status: 'failed', error: { code: 'internal', message: 'unexpected server error; see the server log', attempts: 0, httpStatus: null } });
    }
  }

  /** Every other request would fail the same way (a refused key): stop spending requests. */
  #fatal(run: JobRun, error: CaptionError): void {
    if (run.fatal !== undefined) return;
    run.fatal = error;
    run.controller.abort('fatal' satisfies StopReason);
  }

  /** One more request with every caption of the set; rewrites the machine-written ones it changed. */
  async #consistencyPass(run: JobRun): Promise<void> {
    const { job, captioner, subject, controller } = run;
    const captionsRepo = createCaptionsRepository(this.#options.db);
    const images = (await captionsRepo.allForDataset(job.tenant_id, job.dataset_id)).filter((i) => i.caption_row !== null);
    if (images.length === 0) return;
    try {
      const result = await captioner.normalize(
        images.map((i) => ({ imageId: i.image_id, caption: i.caption_row!.caption })),
        subject,
        controller.signal,
      );
      await createCaptioningJobsRepository(this.#options.db).addUsage(job.id, result.usage.inputTokens, result.usage.outputTokens, result.costUsd);
      const before = new Map(images.map((i) => [i.image_id, i.caption_row!.caption]));
      for (const { imageId, caption } of result.captions) {
        const previous = before.get(imageId);
        if (previous === undefined || previous === caption || caption.trim() === '') continue;
        await this.#options.captions.writeFromJob(job.tenant_id, imageId, {
          caption: caption.trim(),
          source: captioner.provider as CaptionSource,
          model: captioner.model,
          promptVersion: captioner.promptVersion,
          normalized: true,
          jobId: job.id,
        }, job.overwrite);
      }
    } catch (error) {
      if (controller.signal.aborted) return;
      if (!(error instanceof CaptionError)) throw error;
      // The captions stand as they were; the job reports the pass's failure.
      run.consistencyError = error;
      this.#options.logger.warn({ job: job.id, code: error.code, status: error.status }, 'consistency pass failed');
    }
  }
}
