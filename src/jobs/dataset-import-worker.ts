// The background reader of dataset imports, one per process, on the shared JobRunner
// (job-runner.ts: claims with FOR UPDATE SKIP LOCKED, leases, heartbeats, hand-back). The
// work itself is src/services/archive-import.ts; this file settles each import from how
// that ended, and deletes the stored archive once the import has ended.
import type { FastifyBaseLogger } from 'fastify';
import { Type } from 'typebox';
import type { Database } from '../db/database.js';
import { createDatasetImportsRepository, type DatasetImportRow } from '../repositories/dataset-imports.js';
import { importArchive, ImportDatasetGoneError, ImportLeaseLostError, type ArchiveImportLimits } from '../services/archive-import.js';
import type { ImportArchives } from '../services/dataset-imports.js';
import type { ImagesService } from '../services/images.js';
import { DEFAULT_HEARTBEAT_MS, DEFAULT_LEASE_MS, DEFAULT_POLL_MS, JobRunner, stopReason } from './job-runner.js';

/** Imports one process reads side by side: each is disk and CPU bound, one keeps a node busy. */
export const DEFAULT_IMPORT_JOBS = 1;

/** Environment variables of the worker, merged into the service's EnvSchema by src/config.ts (README "Configuration"). */
export const ImportWorkerEnvProperties = {
  /** Dataset imports this process reads side by side; 0 runs none here (another replica must). */
  IMPORT_WORKER_JOBS: Type.Integer({ minimum: 0, maximum: 64, default: DEFAULT_IMPORT_JOBS }),
};

export interface DatasetImportWorkerOptions {
  db: Database;
  images: ImagesService;
  archives: ImportArchives;
  limits: ArchiveImportLimits;
  logger: FastifyBaseLogger;
  maxJobs?: number;
  leaseMs?: number;
  heartbeatMs?: number;
  pollMs?: number;
}

export class DatasetImportWorker extends JobRunner<DatasetImportRow> {
  readonly #options: DatasetImportWorkerOptions;

  constructor(options: DatasetImportWorkerOptions) {
    super({
      kind: 'dataset import',
      queue: createDatasetImportsRepository(options.db),
      logger: options.logger,
      slots: options.maxJobs ?? DEFAULT_IMPORT_JOBS,
      leaseMs: options.leaseMs ?? DEFAULT_LEASE_MS,
      heartbeatMs: options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS,
      pollMs: options.pollMs ?? DEFAULT_POLL_MS,
    });
    this.#options = options;
  }

  protected async runJob(row: DatasetImportRow, controller: AbortController): Promise<void> {
    const { db, logger, archives } = this.#options;
    const imports = createDatasetImportsRepository(db);
    const log = logger.child({ import: row.id, tenant: row.tenant_id });
    const finish = async (status: 'succeeded' | 'failed' | 'canceled', error?: { code: string; message: string }): Promise<void> => {
      if (await imports.finish(row.id, this.owner, status, error)) await archives.remove(row.id);
    };
    if (row.cancel_requested_at !== null) {
      // Canceled while its worker was dead.
      await finish('canceled');
      log.info('dataset import canceled');
      return;
    }
    log.info({ dataset: row.dataset_id, format: row.format, bytes: row.bytes, from: row.entries_read }, row.claims > 1 ? 'dataset import resumed' : 'dataset import started');
    let end;
    try {
      end = await importArchive({ ...this.#options, file: archives.pathOf(row.id), row, owner: this.owner, signal: controller.signal });
    } catch (error) {
      if (error instanceof ImportLeaseLostError) {
        log.warn('dataset import lease lost to another worker; leaving the import to it');
        return;
      }
      if (error instanceof ImportDatasetGoneError) {
        // Its row went with the dataset.
        await archives.remove(row.id);
        log.info('dataset import ended: its dataset was deleted');
        return;
      }
      throw error;
    }
    if (end.kind === 'unreadable') {
      await finish('failed', { code: end.error.code, message: end.error.message });
      log.warn({ code: end.error.code }, 'dataset import failed');
      return;
    }
    if (end.kind === 'done') {
      await finish('succeeded');
      log.info('dataset import finished');
      return;
    }
    switch (stopReason(controller.signal)) {
      case 'canceled':
        await finish('canceled');
        log.info('dataset import canceled');
        return;
      case 'lease-lost':
        log.warn('dataset import lease lost; leaving the import to the worker that holds it');
        return;
      default:
        await imports.release(row.id, this.owner);
        log.info('dataset import released for another process (shutting down)');
    }
  }
}
