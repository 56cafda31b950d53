// Which quality metrics this server can compute: the engine checks the network files under
// METRICS_MODELS_DIR (never loading them); unset, or not a folder, no metric is available.
// Runs asking a missing one are refused at creation (422 metric-unavailable); a worker that
// finds one missing later reports it unavailable instead of failing.
import fs from 'node:fs';
import { metricNetworks, METRIC_NAMES, type MetricName, type MetricNetwork } from '../engine/index.js';
import { fieldError, ProblemError } from '../errors.js';
import { METRIC_DESCRIPTIONS, type QualityMetric } from '../schemas/quality-metrics.js';

/** The network each metric needs (the engine says the same; this names it when there is no folder to ask about). */
const NETWORK_OF: Record<MetricName, MetricNetwork['network']> = {
  clip_t: 'clip', clip_i: 'clip', hps: 'hps', lpips: 'lpips', fid: 'inception', kid: 'inception', is: 'inception',
};

export class QualityMetricsService {
  /** `modelsDir`: METRICS_MODELS_DIR (absolute), undefined when unset. */
  constructor(private readonly modelsDir: string | undefined) {}

  /** The folder to hand the engine: '' when there is none (every metric is then reported unavailable). */
  get engineModelsDir(): string {
    return this.#folderProblem() === undefined ? this.modelsDir! : '';
  }

  /** Why there is no folder to look in, if there is none. */
  #folderProblem(): string | undefined {
    if (this.modelsDir === undefined) return 'METRICS_MODELS_DIR is not set on this server';
    if (!fs.statSync(this.modelsDir, { throwIfNoEntry: false })?.isDirectory()) return 'METRICS_MODELS_DIR is not a folder on this server';
    return undefined;
  }

  /** Every metric, whether its network is here, and why not. */
  list(): QualityMetric[] {
    const problem = this.#folderProblem();
    const networks = problem === undefined ? metricNetworks(this.modelsDir!) : [];
    return METRIC_NAMES.map((metric) => {
      const found = networks.find((network) => network.metric === metric);
      const available = found?.available ?? false;
      return {
        metric,
        network: found?.network ?? NETWORK_OF[metric],
        available,
        reason: available ? null : found?.reason ?? problem ?? `the engine does not know ${metric}`,
        description: METRIC_DESCRIPTIONS[metric],
      };
    });
  }

  /** 422 metric-unavailable naming `field`.<i> for each of `metrics` whose network is missing. */
  checkAvailable(metrics: readonly MetricName[], field: string): void {
    if (metrics.length === 0) return;
    const all = this.list();
    const missing = metrics.flatMap((metric, index) => {
      const found = all.find((entry) => entry.metric === metric)!;
      return found.available ? [] : [{ metric, index, reason: found.reason ?? '' }];
    });
    if (missing.length === 0) return;
    throw new ProblemError({
      status: 422,
      type: 'metric-unavailable',
      title: 'Quality metric not available',
      detail: `This server has no network for ${missing.map(({ metric }) => metric).join(', ')} (GET /v1/quality-metrics says which ` +
        'metrics it has); leave them out, or ask the operator to put their weights under METRICS_MODELS_DIR',
      errors: missing.map(({ metric, index, reason }) => fieldError('body', `${field}.${index}`, `${metric} is not available: ${reason}`)),
    });
  }
}
