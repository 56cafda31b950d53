// Training runs: the service that creates, lists and cancels them, and the background
// worker (TRAINING_SLOTS runs at once; started when the app is ready, stopped, with its
// runs checkpointed and handed back, before the database closes). Publishes TrainingRun.
import fp from 'fastify-plugin';
import path from 'node:path';
import { buildInfo } from '../engine/index.js';
import { DEFAULT_HEARTBEAT_MS, DEFAULT_LEASE_MS, DEFAULT_POLL_MS } from '../jobs/job-runner.js';
import { TrainingWorker } from '../jobs/training-worker.js';
import { BLOBS_SUBDIR } from '../routes/v1/images/index.js';
import { TrainingRunSchema } from '../schemas/training-runs.js';
import { TrainingRunsService } from '../services/training-runs.js';
import { FsBlobStore } from '../storage/fs-blob-store.js';

export const RUNS_SUBDIR = 'runs';

declare module 'fastify' {
  interface FastifyInstance {
    training: { runs: TrainingRunsService; worker: TrainingWorker | undefined };
  }
}

/** TRAIN_DEVICE, else cuda when the engine sees a GPU, else cpu (also when the engine is not built). */
function trainingDevice(configured: string | undefined): string {
  if (configured !== undefined) return configured;
  try {
    return buildInfo().cudaAvailable ? 'cuda' : 'cpu';
  } catch {
    return 'cpu';
  }
}

export default fp(
  async (fastify) => {
    fastify.addSchema(TrainingRunSchema);
    const config = fastify.config;
    const device = trainingDevice(config.training.device);
    const worker = config.training.slots === 0
      ? undefined
      : new TrainingWorker({
        db: fastify.db,
        models: fastify.services.models,
        blobs: new FsBlobStore(path.join(config.dataDir, BLOBS_SUBDIR)),
        runsDir: path.join(config.dataDir, RUNS_SUBDIR),
        logger: fastify.log.child({ component: 'training-worker' }),
        device,
        slots: config.training.slots,
        leaseMs: DEFAULT_LEASE_MS,
        heartbeatMs: DEFAULT_HEARTBEAT_MS,
        pollMs: DEFAULT_POLL_MS,
      });
    const runs = new TrainingRunsService(fastify.db, fastify.services.models, {
      serverPrecision: device.startsWith('cuda') ? 'bf16' : 'no',
      created: () => worker?.wake(),
      cancelRequested: (runId) => worker?.cancel(runId),
    });
    fastify.decorate('training', { runs, worker });
    fastify.addHook('onReady', async () => {
      worker?.start();
    });
    fastify.addHook('onClose', async () => {
      await worker?.stop();
    });
  },
  { name: 'training', dependencies: ['database', 'repositories'] },
);
