// The background runner of generations, on the shared JobRunner (job-runner.ts) with its
// own slots (GENERATION_SLOTS), so a generation never waits behind a training run. A
// claimed generation runs on the resident copy of its base model (resident-models.ts),
// with its LoRAs applied for this call only; each image is stored as a PNG blob with its
// AUTOMATIC1111 parameters. A generation whose process died is simply run again: it has
// no partial state worth keeping.
import type { FastifyBaseLogger } from 'fastify';
import sharp from 'sharp';
import type { Database } from '../db/database.js';
import { isDatabaseUnavailable, retryWhileUnavailable } from '../db/unavailable.js';
import { isDiskFull } from '../storage/disk-space.js';
import type { Progress, RgbImage } from '../engine/index.js';
import { createGenerationsRepository, type GenerationRow } from '../repositories/generations.js';
import { createImagesRepository } from '../repositories/images.js';
import { a1111Parameters, PARAMETERS_KEYWORD, withPngText } from '../services/png-parameters.js';
import type { ImageEvaluationService } from '../services/image-evaluation.js';
import type { ResidentModels } from '../services/resident-models.js';
import type { RunEventsBus } from '../services/run-events-bus.js';
import type { BlobStore } from '../storage/blob-store.js';
import { FsBlobStore, sha256Hex } from '../storage/fs-blob-store.js';
import type { GenerationPhases, ServiceMetrics } from '../metrics/service-metrics.js';
import { JobRunner, stopReason } from './job-runner.js';

export interface GenerationWorkerOptions {
  db: Database;
  resident: ResidentModels;
  blobs: BlobStore;
  bus: RunEventsBus;
  logger: FastifyBaseLogger;
  slots: number;
  leaseMs: number;
  heartbeatMs: number;
  pollMs: number;
  /** Durations and outcomes for /metrics. */
  metrics?: ServiceMetrics;
  /** Scores the images of generations that ask it (params.evaluation); absent: their metrics are reported unavailable. */
  evaluation?: ImageEvaluationService;
}

const PROGRESS_INTERVAL_MS = 500;
/** Deaths of the process running a generation before it fails (graceful hand-backs on shutdown are free). */
const MAX_INTERRUPTIONS = 3;
const seconds = (ms: number) => Math.round(ms) / 1000;

/** The local file of a blob, for the engine to read (an object store would download it to a cache here). */
function blobPath(blobs: BlobStore, sha256: string): string {
  if (!(blobs instanceof FsBlobStore)) throw new Error('generations need LoRA files on a local file system');
  return blobs.pathOf(sha256);
}

export class GenerationWorker extends JobRunner<GenerationRow> {
  readonly #options: GenerationWorkerOptions;

  constructor(options: GenerationWorkerOptions) {
    super({
      kind: 'generation',
      queue: createGenerationsRepository(options.db),
      logger: options.logger,
      slots: options.slots,
      leaseMs: options.leaseMs,
      heartbeatMs: options.heartbeatMs,
      pollMs: options.pollMs,
    });
    this.#options = options;
  }

  protected async runJob(row: GenerationRow, controller: AbortController): Promise<void> {
    const { db, bus, resident, blobs } = this.#options;
    const log = this.#options.logger.child({ generation: row.id, tenant: row.tenant_id });
    const generations = createGenerationsRepository(db);
    const owner = this.owner;
    const { params } = row;
    // Its writes wait out a database outage rather than lose the generation's progress or end.
    const settle = <T>(write: () => Promise<T>) => retryWhileUnavailable(write, () => log.warn('the database is unavailable: the generation\'s writes wait for it'));
    const end = async (status: 'succeeded' | 'failed' | 'canceled', outcome?: Parameters<typeof generations.finish>[3], phases?: GenerationPhases) => {
      await writes;
      await settle(() => generations.finish(row.id, owner, status, outcome));
      bus.notify(row.id);
      this.#options.metrics?.generationFinished(status, phases);
    };
    // Progress writes go out one at a time, in order; the end waits for the last.
    let writes: Promise<unknown> = Promise.resolve();
    let lastWrite = 0;
    const report = (phase: string, step: number, force = false) => {
      const now = Date.now();
      if (!force && now - lastWrite < PROGRESS_INTERVAL_MS) return;
      lastWrite = now;
      const progress = { phase, step, total_steps: params.steps, percent: Math.round((1000 * step) / params.steps) / 10 };
      writes = writes.then(() => settle(() => generations.progress(row.id, owner, progress, phase === 'loading' ? 'starting' : 'running')))
        .then(() => bus.notify(row.id), (error: unknown) => log.warn({ err: error }, 'could not record generation progress'));
    };
    bus.notify(row.id);
    if (row.cancel_requested_at !== null) {
      await end('canceled');
      return;
    }
    if (row.interruptions >= MAX_INTERRUPTIONS) {
      // Its process died each time it ran it (out of memory, say): not tried forever.
      await end('failed', { error: { code: 'attempts_exhausted', message: `The generation's process died ${row.interruptions} times while running it` } });
      return;
    }
    const queueSeconds = ((row.started_at ?? row.created_at).getTime() - row.created_at.getTime()) / 1000;
    report('loading', 0, true);
    let images: RgbImage[];
    let loadSeconds = 0;
    const generateStart = performance.now();
    try {
      const held = await resident.acquire(row.tenant_id, row.model_id);
      loadSeconds = held.loadSeconds;
      try {
        const job = held.model.generate(
          {
            prompt: params.prompt,
            negativePrompt: params.negative_prompt,
            width: params.width,
            height: params.height,
            steps: params.steps,
            guidanceScale: params.guidance_scale,
            sampler: params.sampler,
            seed: params.seed,
            numImages: params.num_images,
            ...(params.clip_skip === undefined ? {} : { clipSkip: params.clip_skip }),
            ...(params.size_conditioning === undefined ? {} : {
              originalWidth: params.size_conditioning.original_width,
              originalHeight: params.size_conditioning.original_height,
              cropTop: params.size_conditioning.crop_top,
              cropLeft: params.size_conditioning.crop_left,
              targetWidth: params.size_conditioning.target_width,
              targetHeight: params.size_conditioning.target_height,
            }),
            loras: row.loras.map((lora) => ({ path: blobPath(blobs, lora.sha256), scale: lora.scale, sha256: lora.sha256 })),
          },
          (progress: Progress) => report(progress.phase, progress.phase === 'denoising' ? progress.step : params.steps),
        );
        controller.signal.addEventListener('abort', () => job.cancel(), { once: true });
        if (controller.signal.aborted) job.cancel();
        images = await job.promise;
      } finally {
        held.release();
      }
    } catch (error) {
      const reason = stopReason(controller.signal);
      if (reason === 'lease-lost') return;
      // Shutting down, or its model could not be looked up (the database is away): run again by whichever process claims it next.
      if (reason === 'shutdown' || isDatabaseUnavailable(error)) {
        await writes;
        await settle(() => generations.release(row.id, owner));
        return;
      }
      if (reason === 'canceled') {
        await end('canceled');
        return;
      }
      // The tenant sees its LoRAs by name, never the server's blob paths.
      let message = error instanceof Error ? error.message : String(error);
      for (const lora of row.loras) message = message.split(blobPath(blobs, lora.sha256)).join(`LoRA ${lora.name} (${lora.lora_id})`);
      log.warn({ err: error }, 'generation failed');
      await end('failed', { error: { code: 'generation_failed', message } });
      return;
    }
    const generateSeconds = (performance.now() - generateStart) / 1000 - loadSeconds;

    // Asked to be scored: right after the images are made; a metric that cannot be is reported, never a failure.
    if (params.evaluation !== undefined) {
      const scored = this.#options.evaluation === undefined
        ? { values: {}, unavailable: Object.fromEntries(params.evaluation.metrics.map((metric) => [metric, 'this worker scores no images'])) }
        : await this.#options.evaluation.evaluate(
          { tenantId: row.tenant_id, request: params.evaluation, prompt: params.prompt, seed: params.seed }, images, controller.signal);
      switch (stopReason(controller.signal)) {
        case 'lease-lost':
          return;
        case 'shutdown':
          await writes;
          await settle(() => generations.release(row.id, owner));
          return;
        case 'canceled':
          await end('canceled');
          return;
        default:
          await settle(() => generations.evaluation(row.id, owner, scored));
      }
    }

    const encodeStart = performance.now();
    report('encoding', params.steps, true);
    try {
      for (const [index, image] of images.entries()) {
        const seed = params.seed + index;
        const png = await sharp(image.rgb, { raw: { width: image.width, height: image.height, channels: 3 } }).png().toBuffer();
        const text = a1111Parameters({ params, seed, model: row.model_id, loras: row.loras });
        const bytes = withPngText(png, PARAMETERS_KEYWORD, text);
        // Written under the blob's lock and referenced in the same transaction, as uploads are
        // (services/images.ts), so the blob collector never sees it unreferenced.
        await settle(() => db.transaction(async (tx) => {
          await createImagesRepository(tx).lockBlob(sha256Hex(bytes));
          const ref = await blobs.put(bytes);
          await createGenerationsRepository(tx).addImage({
            generation_id: row.id, index, seed, width: image.width, height: image.height, sha256: ref.sha256, byte_size: ref.size,
          });
        }));
      }
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      log.warn({ err: error }, 'storing the generated images failed');
      await end('failed', { error: { code: isDiskFull(error) ? 'disk_full' : 'storage_failed', message } });
      return;
    }
    const metrics = {
      queue_seconds: Math.max(0, seconds(queueSeconds * 1000)),
      load_seconds: seconds(loadSeconds * 1000),
      generate_seconds: seconds(generateSeconds * 1000),
      encode_seconds: seconds(performance.now() - encodeStart),
    };
    await end('succeeded', { metrics }, { queue: metrics.queue_seconds, load: metrics.load_seconds, generate: metrics.generate_seconds, encode: metrics.encode_seconds });
    log.info({ images: images.length, ...metrics }, 'generation succeeded');
  }
}
