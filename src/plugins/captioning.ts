// Captioning: the configured providers, the captions and captioning-job services, the
// export, and the background worker (started when the app is ready, stopped before the
// database closes). Publishes the Caption, ImageCaption and CaptioningJob schemas.
import fp from 'fastify-plugin';
import path from 'node:path';
import { createCaptioners, type CaptionerRegistry } from '../captioning/index.js';
import { CaptioningWorker } from '../jobs/captioning-worker.js';
import { BLOBS_SUBDIR } from '../routes/v1/images/index.js';
import { CaptioningJobSchema } from '../schemas/captioning-jobs.js';
import { CaptionSchema, ImageCaptionSchema } from '../schemas/captions.js';
import { createCaptionExport, type CaptionExport } from '../services/caption-export.js';
import { createCaptioningJobsService, type CaptioningJobsService } from '../services/captioning-jobs.js';
import { createCaptionsService, type CaptionsService } from '../services/captions.js';
import { FsBlobStore } from '../storage/fs-blob-store.js';

export interface Captioning {
  captioners: CaptionerRegistry;
  captions: CaptionsService;
  jobs: CaptioningJobsService;
  export: CaptionExport;
  /** undefined when CAPTION_WORKER_JOBS is 0. */
  worker: CaptioningWorker | undefined;
}

declare module 'fastify' {
  interface FastifyInstance {
    captioning: Captioning;
  }
}

export interface CaptioningPluginOptions {
  /** Use these captioners instead of the ones the configuration describes (tests). */
  captioners?: CaptionerRegistry;
}

export default fp<CaptioningPluginOptions>(
  async (fastify, options) => {
    for (const schema of [CaptionSchema, ImageCaptionSchema, CaptioningJobSchema]) fastify.addSchema(schema);

    const config = fastify.config;
    const captioners = options.captioners ?? createCaptioners(config.captions, { logger: fastify.log });
    const blobs = new FsBlobStore(path.join(config.dataDir, BLOBS_SUBDIR));
    const captions = createCaptionsService(fastify.db, { maxChars: config.captions.maxChars });
    const worker = config.captionWorker.maxJobs === 0
      ? undefined
      : new CaptioningWorker({
        db: fastify.db,
        captioners,
        captions,
        blobs,
        logger: fastify.log.child({ component: 'captioning-worker' }),
        concurrency: config.captions.concurrency,
        batch: { maxRequests: config.captions.batch.maxRequests, pollMs: config.captions.batch.pollMs, request: config.captions.request },
        maxJobs: config.captionWorker.maxJobs,
      });
    const jobs = createCaptioningJobsService(fastify.db, captioners, config.captions.batch.threshold, {
      created: () => worker?.wake(),
      cancelRequested: (jobId) => worker?.cancel(jobId),
    }, fastify.webhooks.policy);
    fastify.decorate('captioning', { captioners, captions, jobs, export: createCaptionExport(fastify.db, blobs), worker });

    fastify.addHook('onReady', async () => {
      worker?.start();
    });
    // Registered after the database plugin, so this runs before the database closes.
    fastify.addHook('onClose', async () => {
      await worker?.stop();
    });
  },
  { name: 'captioning', dependencies: ['database', 'webhooks'] },
);
