// METRICS_MODELS_DIR for tests: a scratch folder of links to the metric fixtures
// (../shared/fixtures/metrics: random-weight networks in the layouts the service reads), with
// any subset of the four networks, so a test can leave one out.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { fixturesDir } from '../engine/fixtures.js';

export const metricFixturesDir = path.join(fixturesDir, 'metrics');
/** Each network's folder under METRICS_MODELS_DIR, and the fixture it links to. */
const NETWORKS = { inception: 'inception', lpips: 'lpips', clip: 'clip-tiny', hps: 'openclip-tiny' } as const;
export type MetricNetworkFolder = keyof typeof NETWORKS;

const made: string[] = [];
after(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

/** A new METRICS_MODELS_DIR holding `networks` (every one by default); removed after the test file. */
export function metricsModelsDir(networks: readonly MetricNetworkFolder[] = Object.keys(NETWORKS) as MetricNetworkFolder[]): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-metrics-models-'));
  made.push(dir);
  for (const network of networks) fs.symlinkSync(path.join(metricFixturesDir, NETWORKS[network]), path.join(dir, network), 'dir');
  return dir;
}
