// Runs the maintenance sweep (src/services/maintenance.ts) when it is due, on whichever
// replica claims it first: the sweep's one row in maintenance_sweeps is a job of the shared
// queue mechanism (JobRunner), held under a lease while it runs, and due again
// MAINTENANCE_INTERVAL_MS after it ends. A sweep that fails (the database away) is claimed
// again once its lease has run out.
import type { FastifyBaseLogger } from 'fastify';
import type { Database } from '../db/database.js';
import type { ServiceMetrics } from '../metrics/service-metrics.js';
import { createMaintenanceRepository, type SweepClaim } from '../repositories/maintenance.js';
import type { MaintenanceService } from '../services/maintenance.js';
import { DEFAULT_HEARTBEAT_MS, DEFAULT_LEASE_MS, JobRunner, stopReason } from './job-runner.js';

/** How long one sweep may purge before it leaves the rest to the next. */
export const SWEEP_MAX_MS = 60_000;
/** How often a replica asks whether a sweep is due. */
const POLL_MS = 60_000;

export interface MaintenanceWorkerOptions {
  db: Database;
  service: MaintenanceService;
  logger: FastifyBaseLogger;
  /** From the end of one sweep to the next being due. */
  intervalMs: number;
  metrics?: ServiceMetrics;
}

export class MaintenanceWorker extends JobRunner<SweepClaim> {
  readonly #options: MaintenanceWorkerOptions;

  constructor(options: MaintenanceWorkerOptions) {
    const sweeps = createMaintenanceRepository(options.db);
    super({
      kind: 'maintenance sweep',
      queue: { claimNext: (owner, leaseMs) => sweeps.claim(owner, leaseMs), heartbeat: (id, owner, leaseMs) => sweeps.heartbeat(id, owner, leaseMs) },
      logger: options.logger,
      slots: 1,
      leaseMs: DEFAULT_LEASE_MS,
      heartbeatMs: DEFAULT_HEARTBEAT_MS,
      pollMs: Math.min(POLL_MS, options.intervalMs),
    });
    this.#options = options;
  }

  protected async runJob(claim: SweepClaim, controller: AbortController): Promise<void> {
    const { db, service, logger, intervalMs, metrics } = this.#options;
    const sweeps = createMaintenanceRepository(db);
    const started = Date.now();
    const report = await service.sweep(started + SWEEP_MAX_MS, controller.signal);
    const { incomplete, ...removed } = report;
    metrics?.maintenanceRemoved(removed);
    switch (stopReason(controller.signal)) {
      case 'lease-lost':
        return;
      case 'shutdown':
        await sweeps.release(claim.id, this.owner);
        return;
      default:
        await sweeps.finish(claim.id, this.owner, intervalMs, removed);
        logger.info({ ...removed, incomplete, seconds: (Date.now() - started) / 1000 }, 'maintenance sweep done');
    }
  }
}
