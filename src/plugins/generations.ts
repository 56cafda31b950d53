// Generations and LoRAs: the services that queue generations and keep LoRA resources, the
// resident models they share, and the background worker (GENERATION_SLOTS generations at
// once; started when the app is ready, stopped before the database closes). Publishes
// Generation and Lora.
import fp from 'fastify-plugin';
import type { Listener } from '../db/database.js';
import path from 'node:path';
import { DEFAULT_HEARTBEAT_MS, DEFAULT_LEASE_MS, DEFAULT_POLL_MS } from '../jobs/job-runner.js';
import { GenerationWorker } from '../jobs/generation-worker.js';
import { BLOBS_SUBDIR } from '../routes/v1/images/index.js';
import { GenerationSchema } from '../schemas/generations.js';
import { LoraSchema } from '../schemas/loras.js';
import { GenerationsService } from '../services/generations.js';
import { ImageEvaluationService } from '../services/image-evaluation.js';
import { LorasService } from '../services/loras.js';
import { ResidentModels } from '../services/resident-models.js';
import { RunEventsBus } from '../services/run-events-bus.js';
import { FsBlobStore } from '../storage/fs-blob-store.js';
import { trainingDevices } from './device.js';

declare module 'fastify' {
  interface FastifyInstance {
    generations: {
      service: GenerationsService;
      loras: LorasService;
      resident: ResidentModels;
      worker: GenerationWorker | undefined;
    };
  }
}

export default fp(
  async (fastify) => {
    fastify.addSchema(GenerationSchema);
    fastify.addSchema(LoraSchema);
    const config = fastify.config;
    // The first training device: with several, generations share it with the runs there.
    const device = trainingDevices(config.training).devices[0]!;
    const blobs = new FsBlobStore(path.join(config.dataDir, BLOBS_SUBDIR));
    const bus = new RunEventsBus();
    const resident = new ResidentModels({
      models: fastify.services.models,
      device,
      // Half precision on a GPU (the engine keeps the VAE in float32 where it needs it); float32 on the CPU.
      dtype: device.startsWith('cuda') ? 'bfloat16' : 'float32',
      maxBytes: config.generation.modelCacheBytes,
      loraCacheBytes: config.generation.loraCacheBytes,
    });
    const worker = config.generation.slots === 0
      ? undefined
      : new GenerationWorker({
        db: fastify.db,
        resident,
        blobs,
        bus,
        logger: fastify.log.child({ component: 'generation-worker' }),
        slots: config.generation.slots,
        leaseMs: DEFAULT_LEASE_MS,
        heartbeatMs: DEFAULT_HEARTBEAT_MS,
        // A generation takes seconds: look for ones queued on other replicas often.
        pollMs: Math.min(DEFAULT_POLL_MS, 500),
        metrics: fastify.metrics,
        evaluation: new ImageEvaluationService({ db: fastify.db, blobs, qualityMetrics: fastify.services.qualityMetrics, device }),
      });
    const service = new GenerationsService({
      db: fastify.db,
      models: fastify.services.models,
      blobs,
      bus,
      webhookPolicy: fastify.webhooks.policy,
      tenantMaxQueued: config.generation.tenantMaxQueued,
      created: () => worker?.wake(),
      cancelRequested: (id) => worker?.cancel(id),
    });
    // A deleted tenant model leaves this replica's memory as soon as no generation holds it.
    fastify.services.models.onDeleted((id) => resident.forget(id));
    fastify.decorate('generations', {
      service,
      loras: new LorasService({ db: fastify.db, blobs, models: fastify.services.models, resident }),
      resident,
      worker,
    });
    let unfollow: (() => Promise<void>) | undefined;
    let queued: Listener | undefined;
    fastify.addHook('onReady', async () => {
      worker?.start();
      unfollow = await bus.follow(fastify.db, 'generations');
      // Queued on any replica: claimed now rather than at the next poll (after a lost connection too: it may have missed one).
      if (worker !== undefined) queued = await fastify.db.listen('generations_queued', () => worker.wake());
    });
    fastify.addHook('onClose', async () => {
      await queued?.close();
      await unfollow?.();
      await worker?.stop();
      resident.close();
    });
  },
  { name: 'generations', dependencies: ['database', 'metrics', 'repositories', 'webhooks'] },
);
