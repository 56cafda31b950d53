// Dataset imports: the service, its stored archives and the background worker (started when
// the app is ready, stopped before the database closes). Publishes the DatasetImport schema.
import fp from 'fastify-plugin';
import path from 'node:path';
import { DatasetImportWorker } from '../jobs/dataset-import-worker.js';
import { BLOBS_SUBDIR } from '../routes/v1/images/index.js';
import { DatasetImportSchema } from '../schemas/dataset-imports.js';
import type { ArchiveImportLimits } from '../services/archive-import.js';
import { createDatasetImportsService, type DatasetImportsService } from '../services/dataset-imports.js';
import { uploadLimits } from '../services/image-limits.js';
import { ImagesService } from '../services/images.js';
import { FsBlobStore } from '../storage/fs-blob-store.js';
import { ImportArchives } from '../storage/import-archives.js';

/** Where stored archives wait for their import inside DATA_DIR. */
export const IMPORTS_SUBDIR = 'imports';
/** Entries a zip may list per image the dataset may hold: the image, its sidecar, folders, metadata files. */
const ZIP_ENTRIES_PER_IMAGE = 4;

export interface DatasetImports {
  service: DatasetImportsService;
  /** undefined when IMPORT_WORKER_JOBS is 0 (or the role is api). */
  worker: DatasetImportWorker | undefined;
}

declare module 'fastify' {
  interface FastifyInstance {
    datasetImports: DatasetImports;
  }
}

export default fp(
  async (fastify) => {
    fastify.addSchema(DatasetImportSchema);
    const config = fastify.config;
    const archives = new ImportArchives(path.join(config.dataDir, IMPORTS_SUBDIR));
    const images = new ImagesService(fastify.db, new FsBlobStore(path.join(config.dataDir, BLOBS_SUBDIR)), uploadLimits(config), { log: fastify.log });
    const limits: ArchiveImportLimits = {
      image: { maxBytes: config.uploadMaxFileBytes, maxPixels: config.images.maxPixels, minSide: config.images.minSide },
      maxImagesPerDataset: config.images.maxImagesPerDataset,
      captionMaxBytes: config.images.captionMaxBytes,
      // A dataset's worth of images fits whatever ZIP_MAX_ENTRIES says for small uploads.
      maxEntries: Math.max(config.images.zipMaxEntries, ZIP_ENTRIES_PER_IMAGE * config.images.maxImagesPerDataset),
      maxCompressionRatio: config.images.zipMaxCompressionRatio,
    };
    const worker = config.importWorker.maxJobs === 0
      ? undefined
      : new DatasetImportWorker({
        db: fastify.db,
        images,
        archives,
        limits,
        logger: fastify.log.child({ component: 'dataset-import-worker' }),
        maxJobs: config.importWorker.maxJobs,
      });
    const service = createDatasetImportsService(fastify.db, archives, {
      created: () => worker?.wake(),
      cancelRequested: (id) => worker?.cancel(id),
    }, config.images.maxRequestBytes);
    fastify.decorate('datasetImports', { service, worker });

    let sweep: Promise<void> | undefined;
    fastify.addHook('onReady', async () => {
      // Archives of imports that ended while their process died before deleting them; in the
      // background, since start-up must not need the database.
      sweep = service.sweepArchives().then(
        (removed) => { if (removed > 0) fastify.log.info({ removed }, 'stale import archives removed'); },
        (error: unknown) => fastify.log.warn({ err: error }, 'could not sweep import archives'),
      );
      worker?.start();
    });
    // Registered after the database plugin, so this runs before the database closes.
    fastify.addHook('onClose', async () => {
      await sweep;
      await worker?.stop();
    });
  },
  { name: 'dataset-imports', dependencies: ['database'] },
);
