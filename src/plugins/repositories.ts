// Repositories (SQL, one per table group) and the services built on them, as decorators.
import fp from 'fastify-plugin';
import { createApiKeysRepository, type ApiKeysRepository } from '../repositories/api-keys.js';
import { createDatasetsRepository, type DatasetsRepository } from '../repositories/datasets.js';
import { createTenantsRepository, type TenantsRepository } from '../repositories/tenants.js';
import { createDatasetsService, type DatasetsService } from '../services/datasets.js';

export interface Repositories {
  tenants: TenantsRepository;
  apiKeys: ApiKeysRepository;
  datasets: DatasetsRepository;
}

export interface Services {
  datasets: DatasetsService;
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
    fastify.decorate('services', { datasets: createDatasetsService(repositories.datasets) });
  },
  { name: 'repositories', dependencies: ['database'] },
);
