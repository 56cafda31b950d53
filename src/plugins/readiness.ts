// What a worker must have loaded before it is ready (GET /readyz): the native engine (in
// ROLE=worker; the single-machine ROLE=all loads it on first use, as the API does) and the
// PRELOAD_MODELS, loaded in the background after the server listens so that a startup
// probe, not liveness, covers a slow load. An engine or a model that fails to load keeps
// the process unready, with the reason, rather than crashing it.
import fp from 'fastify-plugin';
import { buildInfo } from '../engine/index.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Why this process is not ready yet, or undefined when it is (database checks aside). */
    notReadyReason(): string | undefined;
  }
}

export default fp(
  async (fastify) => {
    const config = fastify.config;
    const loadsEngine = config.role === 'worker' || config.preloadModels.length > 0;
    const pending = new Set<string>(config.preloadModels);
    let failure: string | undefined;

    fastify.decorate('notReadyReason', () => {
      if (failure !== undefined) return failure;
      if (pending.size > 0) return `Loading models: ${[...pending].join(', ')}`;
      return undefined;
    });

    fastify.addHook('onReady', async () => {
      if (loadsEngine) {
        try {
          const info = buildInfo(); // loads libtorch and the addon
          fastify.log.info({ torch: info.torchVersion, cuda: info.cudaAvailable, gpus: info.cudaDeviceCount }, 'engine loaded');
        } catch (error) {
          failure = `The native engine does not load: ${(error as Error).message}`;
          fastify.log.error({ err: error }, 'the native engine does not load; this process stays unready');
          return;
        }
      }
      for (const modelId of config.preloadModels) {
        const started = performance.now();
        fastify.generations.resident.acquire(null, modelId).then(
          (held) => {
            held.release(); // stays resident: the cache keeps it while it fits MODEL_CACHE_BYTES
            pending.delete(modelId);
            fastify.log.info({ model: modelId, seconds: (performance.now() - started) / 1000 }, 'model preloaded');
          },
          (error: unknown) => {
            failure = `Model ${modelId} (PRELOAD_MODELS) does not load: ${(error as Error).message}`;
            fastify.log.error({ err: error, model: modelId }, 'a preloaded model does not load; this process stays unready');
          },
        );
      }
    });
  },
  { name: 'readiness', dependencies: ['generations'] },
);
