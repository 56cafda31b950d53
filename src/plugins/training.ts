// Training runs: the services that create, list, cancel and delete them, follow their
// events and serve their files, and the background worker (TRAINING_SLOTS runs at once on
// its devices, TRAIN_DEVICES or TRAIN_DEVICE; started when the app is ready, stopped, with its
// runs checkpointed and handed back, before the database closes). Publishes TrainingRun, TrainingRunEvent and TrainingRunArtifact.
import fp from 'fastify-plugin';
import type { Listener } from '../db/database.js';
import path from 'node:path';
import { DEFAULT_HEARTBEAT_MS, DEFAULT_POLL_MS } from '../jobs/job-runner.js';
import { TrainingWorker } from '../jobs/training-worker.js';
import { BLOBS_SUBDIR } from '../routes/v1/images/index.js';
import { TrainingRunArtifactSchema } from '../schemas/training-run-artifacts.js';
import { CPU_PRECISION, CUDA_PRECISION } from '../schemas/training-params.js';
import { TrainingRunEventSchema } from '../schemas/training-run-events.js';
import { TrainingRunSchema } from '../schemas/training-runs.js';
import { ClassImagesService } from '../services/class-images.js';
import { RunEventsBus } from '../services/run-events-bus.js';
import { TrainingRunArtifactsService } from '../services/training-run-artifacts.js';
import { TrainingRunEventsService } from '../services/training-run-events.js';
import { TrainingRunsService } from '../services/training-runs.js';
import { FsBlobStore } from '../storage/fs-blob-store.js';
import { FsRunFileStore } from '../storage/fs-run-file-store.js';
import { RUNS_SUBDIR, TRAINING_CACHE_SUBDIR } from '../storage/run-file-store.js';
import { trainingDevices } from './device.js';

export { RUNS_SUBDIR };


declare module 'fastify' {
  interface FastifyInstance {
    training: {
      runs: TrainingRunsService;
      events: TrainingRunEventsService;
      artifacts: TrainingRunArtifactsService;
      worker: TrainingWorker | undefined;
    };
  }
}

export default fp(
  async (fastify) => {
    fastify.addSchema(TrainingRunSchema);
    fastify.addSchema(TrainingRunEventSchema);
    fastify.addSchema(TrainingRunArtifactSchema);
    const config = fastify.config;
    // TRAIN_DEVICES=all asks the engine now: a process without the GPUs it was told to use does not start.
    const devices = trainingDevices(config.training);
    const device = devices.devices[0]!;
    const files = new FsRunFileStore(path.join(config.dataDir, RUNS_SUBDIR));
    const bus = new RunEventsBus();
    const worker = devices.slots === 0
      ? undefined
      : new TrainingWorker({
        db: fastify.db,
        models: fastify.services.models,
        blobs: new FsBlobStore(path.join(config.dataDir, BLOBS_SUBDIR)),
        classImages: new ClassImagesService(fastify.db, new FsBlobStore(path.join(config.dataDir, BLOBS_SUBDIR)), fastify.generations.resident),
        files,
        cacheDir: path.join(config.dataDir, TRAINING_CACHE_SUBDIR),
        bus,
        logger: fastify.log.child({ component: 'training-worker' }),
        devices,
        leaseMs: config.training.leaseMs,
        // Several heartbeats per lease, so one slow write does not lose the run.
        heartbeatMs: Math.min(DEFAULT_HEARTBEAT_MS, Math.floor(config.training.leaseMs / 3)),
        maxAttempts: config.training.maxAttempts,
        pollMs: DEFAULT_POLL_MS,
        metrics: fastify.metrics,
        qualityMetrics: fastify.services.qualityMetrics,
      });
    const runs = new TrainingRunsService(fastify.db, fastify.services.models, {
      serverPrecision: device.startsWith('cuda') ? CUDA_PRECISION : CPU_PRECISION,
      tenantMaxQueuedRuns: config.training.tenantMaxQueuedRuns,
      tenantMaxModelBytes: config.training.tenantMaxModelBytes,
      qualityMetrics: fastify.services.qualityMetrics,
      webhookPolicy: fastify.webhooks.policy,
      files,
      created: () => worker?.wake(),
      cancelRequested: (runId) => worker?.cancel(runId),
    });
    fastify.decorate('training', {
      runs,
      events: new TrainingRunEventsService(fastify.db, bus),
      artifacts: new TrainingRunArtifactsService(fastify.db, files),
      worker,
    });
    let unfollow: (() => Promise<void>) | undefined;
    let queued: Listener | undefined;
    fastify.addHook('onReady', async () => {
      worker?.start();
      unfollow = await bus.follow(fastify.db, 'training_run_events');
      // Queued on any replica: claimed now rather than at the next poll (after a lost connection too: it may have missed one).
      if (worker !== undefined) queued = await fastify.db.listen('training_runs_queued', () => worker.wake());
    });
    fastify.addHook('onClose', async () => {
      await queued?.close();
      await unfollow?.();
      await worker?.stop();
    });
  },
  { name: 'training', dependencies: ['database', 'metrics', 'repositories', 'webhooks', 'generations'] },
);
