// One maintenance sweep: what the tables and DATA_DIR would otherwise keep forever, purged in
// small batches until each kind is done or the sweep's time is up (the rest waits for the
// next sweep): webhook messages older than WEBHOOK_RETENTION_DAYS with their attempts,
// Idempotency-Key records no retry can use, finished generations older than
// GENERATION_RETENTION_DAYS (when set), checkpoints of finished runs beyond KEEP_CHECKPOINTS,
// and blobs no row references (queued releases at once, unqueued orphans after a grace
// period), with their thumbnails.
import type { FastifyBaseLogger } from 'fastify';
import { Type } from 'typebox';
import type { Database } from '../db/database.js';
import { createMaintenanceRepository } from '../repositories/maintenance.js';
import type { RunFileStore } from '../storage/run-file-store.js';
import type { ImagesService } from './images.js';

/** Rows one statement removes at most: short transactions, short locks. */
const BATCH = 500;
/** An unreferenced blob younger than this may belong to an upload that has not committed its row yet. */
export const ORPHAN_BLOB_GRACE_MS = 3_600_000;

/** Environment variables of the sweep, merged into the service's EnvSchema by src/config.ts (README "Configuration"). */
export const MaintenanceEnvProperties = {
  /** From the end of one maintenance sweep to the next (one replica runs each); 0: this process runs none. */
  MAINTENANCE_INTERVAL_MS: Type.Integer({ minimum: 0, default: 3_600_000 }),
  /** Days a delivered or failed webhook message and its attempts are kept (Svix keeps 90). */
  WEBHOOK_RETENTION_DAYS: Type.Integer({ minimum: 1, default: 90 }),
  /** Days a finished generation and its images are kept; unset: kept until deleted. */
  GENERATION_RETENTION_DAYS: Type.Optional(Type.Integer({ minimum: 1 })),
  /** Checkpoints a finished training run keeps, newest first (0: none); the runs in progress keep theirs. */
  KEEP_CHECKPOINTS: Type.Integer({ minimum: 0, default: 1 }),
};

export interface RetentionPolicy {
  webhookRetentionDays: number;
  /** Undefined: generations are kept. */
  generationRetentionDays: number | undefined;
  /** Checkpoints a finished run keeps, newest first. */
  keepCheckpoints: number;
  /** Idempotency-Key lifetimes (src/plugins/idempotency.ts). */
  idempotency: { inFlightMs: number; storedMs: number };
  /** How old an unreferenced blob must be before it is removed: an upload may be between writing it and committing its row. */
  orphanBlobGraceMs: number;
}

/** What one sweep removed, by kind. */
export interface SweepReport {
  webhook_messages: number;
  idempotency_keys: number;
  generations: number;
  checkpoints: number;
  blobs: number;
  /** Whether the sweep ran out of time before every kind was done. */
  incomplete: boolean;
}

export class MaintenanceService {
  readonly #db: Database;
  readonly #images: ImagesService;
  readonly #runFiles: RunFileStore;
  readonly #policy: RetentionPolicy;
  readonly #log: FastifyBaseLogger;

  constructor(db: Database, images: ImagesService, runFiles: RunFileStore, policy: RetentionPolicy, log: FastifyBaseLogger) {
    this.#db = db;
    this.#images = images;
    this.#runFiles = runFiles;
    this.#policy = policy;
    this.#log = log;
  }

  /** One sweep, stopping between batches once `deadline` (ms since the epoch) has passed or `signal` aborts. */
  async sweep(deadline: number, signal?: AbortSignal): Promise<SweepReport> {
    const repository = createMaintenanceRepository(this.#db);
    const policy = this.#policy;
    const report: SweepReport = { webhook_messages: 0, idempotency_keys: 0, generations: 0, checkpoints: 0, blobs: 0, incomplete: false };
    const timeUp = () => Date.now() >= deadline || signal?.aborted === true;
    /** Runs `batch` until it removes fewer than BATCH or the time is up; what it removed in all. */
    const drain = async (batch: () => Promise<number>): Promise<number> => {
      let total = 0;
      for (;;) {
        if (timeUp()) {
          report.incomplete = true;
          return total;
        }
        const removed = await batch();
        total += removed;
        if (removed < BATCH) return total;
      }
    };

    report.webhook_messages = await drain(() => repository.deleteWebhookMessages(policy.webhookRetentionDays, BATCH));
    const keysExpireMs = Math.max(policy.idempotency.inFlightMs, policy.idempotency.storedMs);
    report.idempotency_keys = await drain(() => repository.deleteIdempotencyKeys(keysExpireMs, BATCH));
    if (policy.generationRetentionDays !== undefined) {
      const retentionDays = policy.generationRetentionDays;
      report.generations = await drain(() => repository.deleteGenerations(retentionDays, BATCH));
    }
    report.checkpoints = await drain(async () => {
      const surplus = await repository.surplusCheckpoints(policy.keepCheckpoints, BATCH);
      for (const checkpoint of surplus) {
        // Files first: a crash between the two leaves an artifact the next sweep removes again, never a file nothing names.
        await this.#runFiles.deleteFiles(checkpoint.run_id, [checkpoint.name]);
        await repository.deleteArtifact(checkpoint.run_id, checkpoint.name);
      }
      return surplus.length;
    });

    // Blobs the purges above released (generation images), then any other no row references.
    const collected = await this.#images.collectReleasedBlobs();
    for (const failure of collected.failures) this.#log.warn({ err: failure.error, sha256: failure.sha256 }, 'maintenance: a released blob could not be removed');
    report.blobs = collected.unlinked;
    if (timeUp()) report.incomplete = true;
    else report.blobs += await this.#images.sweepOrphanBlobs(policy.orphanBlobGraceMs, deadline);
    return report;
  }
}
