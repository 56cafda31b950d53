// Repositories (SQL, one per table group) and the services built on them, as decorators.
import fp from 'fastify-plugin';
import path from 'node:path';
import { createApiKeysRepository, type ApiKeysRepository } from '../repositories/api-keys.js';
import { createDatasetsRepository, type DatasetsRepository } from '../repositories/datasets.js';
import { createTenantsRepository, type TenantsRepository } from '../repositories/tenants.js';
import { createDatasetsService, type DatasetsService } from '../services/datasets.js';
import { ModelsService } from '../services/models.js';
import { QualityMetricsService } from '../services/quality-metrics.js';
import { DiskSpace } from '../storage/disk-space.js';
import { FsRunFileStore } from '../storage/fs-run-file-store.js';
import { RUNS_SUBDIR } from '../storage/run-file-store.js';

export interface Repositories {
  tenants: TenantsRepository;
  apiKeys: ApiKeysRepository;
  datasets: DatasetsRepository;
}

export interface Services {
  datasets: DatasetsService;
  models: ModelsService;
  /** Which quality metrics this server has the networks of (METRICS_MODELS_DIR). */
  qualityMetrics: QualityMetricsService;
  /** DATA_DIR's free space, and its floor (DATA_DIR_MIN_FREE_BYTES). */
  diskSpace: DiskSpace;
}

declare module 'fastify' {
  interface FastifyInstance {
    repositories: Repositories;
    services: Services;
  }
}

export default fp(
  async (fastify) => {
    const repositories: Repositories = {
      tenants: createTenantsRepository(fastify.db),
      apiKeys: createApiKeysRepository(fastify.db),
      datasets: createDatasetsRepository(fastify.db),
    };
    fastify.decorate('repositories', repositories);
    fastify.decorate('services', {
      datasets: createDatasetsService(repositories.datasets),
      // The demo models are always written under DATA_DIR, even when MODELS_DIR is a read-only volume;
      // tenants' models stay in the folders of the runs that trained them.
      models: new ModelsService(
        fastify.config.modelsDir,
        path.join(fastify.config.dataDir, 'models'),
        fastify.log.child({ component: 'models' }),
        { db: fastify.db, runFiles: new FsRunFileStore(path.join(fastify.config.dataDir, RUNS_SUBDIR)) },
      ),
      qualityMetrics: new QualityMetricsService(fastify.config.metricsModelsDir),
      diskSpace: new DiskSpace(fastify.config.dataDir, fastify.config.dataDirMinFreeBytes),
    });
  },
  { name: 'repositories', dependencies: ['database'] },
);
