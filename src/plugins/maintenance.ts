// The maintenance sweep: its service and the worker that runs it when due (one replica per
// sweep), started when the app is ready and stopped before the database closes.
import fp from 'fastify-plugin';
import path from 'node:path';
import { MaintenanceWorker } from '../jobs/maintenance-worker.js';
import { BLOBS_SUBDIR, THUMBNAILS_SUBDIR } from '../routes/v1/images/index.js';
import { uploadLimits } from '../services/image-limits.js';
import { ImagesService } from '../services/images.js';
import { MaintenanceService, ORPHAN_BLOB_GRACE_MS } from '../services/maintenance.js';
import { ThumbnailCache } from '../services/thumbnails.js';
import { FsBlobStore } from '../storage/fs-blob-store.js';
import { FsRunFileStore } from '../storage/fs-run-file-store.js';
import { RUNS_SUBDIR } from '../storage/run-file-store.js';
import { IDEMPOTENCY_LIFETIMES } from './idempotency.js';

declare module 'fastify' {
  interface FastifyInstance {
    maintenance: { service: MaintenanceService; worker: MaintenanceWorker | undefined };
  }
}

export default fp(
  async (fastify) => {
    const config = fastify.config;
    const policy = config.maintenance;
    const images = new ImagesService(fastify.db, new FsBlobStore(path.join(config.dataDir, BLOBS_SUBDIR)), uploadLimits(config), {
      thumbnails: new ThumbnailCache(path.join(config.dataDir, THUMBNAILS_SUBDIR), { log: fastify.log }),
      log: fastify.log,
    });
    const log = fastify.log.child({ component: 'maintenance' });
    const service = new MaintenanceService(fastify.db, images, new FsRunFileStore(path.join(config.dataDir, RUNS_SUBDIR)), {
      webhookRetentionDays: policy.webhookRetentionDays,
      generationRetentionDays: policy.generationRetentionDays,
      keepCheckpoints: policy.keepCheckpoints,
      idempotency: IDEMPOTENCY_LIFETIMES,
      orphanBlobGraceMs: ORPHAN_BLOB_GRACE_MS,
    }, log);
    const worker = policy.intervalMs === 0
      ? undefined
      : new MaintenanceWorker({ db: fastify.db, service, logger: log, intervalMs: policy.intervalMs, metrics: fastify.metrics });
    fastify.decorate('maintenance', { service, worker });
    fastify.addHook('onReady', async () => {
      worker?.start();
    });
    fastify.addHook('onClose', async () => {
      await worker?.stop();
    });
  },
  { name: 'maintenance', dependencies: ['database', 'metrics'] },
);
