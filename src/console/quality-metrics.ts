// Quality metrics of runs (issue 25): their names and short labels, and the API's fields
// about them, read defensively. These fields are newer than openapi/openapi.json, so they
// are typed here, in one place, rather than in the generated client: an absent or odd
// field reads as "nothing scored" and the pages show nothing for it. Pure (no DOM, no
// Preact), so test/console/quality-metrics.test.ts runs it under Node.
import { formatNumber } from './format.js';

/** The metrics in the order the console shows them: prompt and subject fidelity, preference, diversity, then the distribution scores. */
export const QUALITY_METRICS = ['clip_t', 'clip_i', 'hps', 'lpips', 'fid', 'kid', 'is'] as const;
export type QualityMetric = (typeof QUALITY_METRICS)[number];

/** Short labels for a table's columns and the panel's rows. */
export const METRIC_LABELS: Readonly<Record<QualityMetric, string>> = {
  clip_t: 'CLIP-T',
  clip_i: 'CLIP-I',
  hps: 'HPS',
  lpips: 'LPIPS (diversity)',
  fid: 'FID',
  kid: 'KID',
  is: 'IS',
};

/** Which way is better, for the reader (FID and KID are distances to the dataset's images). */
export const LOWER_IS_BETTER: ReadonlySet<QualityMetric> = new Set(['fid', 'kid']);

/** One entry of GET /v1/quality-metrics: whether the service has the network's weights. */
export interface QualityMetricInfo {
  metric: string;
  network: string;
  available: boolean;
  reason: string | null;
  description: string;
}

/** One scored set of images: the run resource's `quality_metrics`, or a `validation` event's metrics. */
export interface QualitySet {
  step: number;
  /** The end-of-run set (validation.final_images per prompt, scored with every metric). */
  final: boolean;
  /** By key: the metric names, and images, reference_images, kid_std, kid_subsets, kid_subset_size, is_std, is_splits. */
  values: Record<string, number>;
  /** By metric: why it was not computed. */
  unavailable: Record<string, string>;
}

export function isQualityMetric(name: string): name is QualityMetric {
  return (QUALITY_METRICS as readonly string[]).includes(name);
}

export function metricLabel(name: string): string {
  return isQualityMetric(name) ? METRIC_LABELS[name] : name;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The finite numbers of a record, by key (a `metric_` prefix, as the engine's progress reports have it, dropped). */
function numbersOf(value: unknown): Record<string, number> {
  const numbers: Record<string, number> = {};
  if (!isRecord(value)) return numbers;
  for (const [key, entry] of Object.entries(value)) {
    if (typeof entry === 'number' && Number.isFinite(entry)) numbers[key.replace(/^metric_/, '')] = entry;
  }
  return numbers;
}

function stringsOf(value: unknown): Record<string, string> {
  const strings: Record<string, string> = {};
  if (!isRecord(value)) return strings;
  for (const [key, entry] of Object.entries(value)) if (typeof entry === 'string') strings[key] = entry;
  return strings;
}

/** A set from `{ step, final, values | metrics, unavailable }`; null when it scored nothing and said nothing was unavailable. */
export function qualitySetOf(value: unknown, step?: number): QualitySet | null {
  if (!isRecord(value)) return null;
  const values = numbersOf(value.values ?? value.metrics);
  const unavailable = stringsOf(value.unavailable);
  if (!QUALITY_METRICS.some((metric) => metric in values || metric in unavailable)) return null;
  const ownStep = typeof value.step === 'number' ? value.step : undefined;
  return { step: ownStep ?? step ?? 0, final: value.final === true, values, unavailable };
}

/** The run resource's `quality_metrics` (the latest scored set; the final one after a completed run), or null. */
export function runQuality(run: unknown): QualitySet | null {
  return isRecord(run) ? qualitySetOf(run.quality_metrics) : null;
}

/** What a run asked for: `params.validation.metrics` and `params.validation.final_images` (none and 0 when absent). */
export function requestedQuality(run: unknown): { metrics: string[]; finalImages: number } {
  const validation = isRecord(run) && isRecord(run.params) && isRecord(run.params.validation) ? run.params.validation : {};
  const metrics = Array.isArray(validation.metrics) ? validation.metrics.filter((name): name is string => typeof name === 'string') : [];
  const finalImages = typeof validation.final_images === 'number' ? validation.final_images : 0;
  return { metrics, finalImages };
}

/** GET /v1/quality-metrics's `data`, the well-formed entries only, in the console's order. */
export function metricInfosOf(body: unknown): QualityMetricInfo[] {
  const data = isRecord(body) && Array.isArray(body.data) ? body.data : [];
  const infos = data.filter(
    (entry): entry is QualityMetricInfo => isRecord(entry) && typeof entry.metric === 'string' && typeof entry.available === 'boolean',
  ).map((entry) => ({
    metric: entry.metric,
    network: typeof entry.network === 'string' ? entry.network : '',
    available: entry.available,
    reason: typeof entry.reason === 'string' ? entry.reason : null,
    description: typeof entry.description === 'string' ? entry.description : '',
  }));
  const rank = (name: string) => (isQualityMetric(name) ? QUALITY_METRICS.indexOf(name) : QUALITY_METRICS.length);
  return infos.sort((a, b) => rank(a.metric) - rank(b.metric));
}

/** The latest of several sets: the final one if there is one, else the one of the highest step. */
export function latestSet(sets: readonly QualitySet[]): QualitySet | null {
  let latest: QualitySet | null = null;
  for (const set of sets) {
    if (latest === null || (set.final && !latest.final) || (set.final === latest.final && set.step >= latest.step)) latest = set;
  }
  return latest;
}

/** The metrics any of the sets has a value of, in the console's order: a table's columns. */
export function metricColumns(sets: ReadonlyArray<QualitySet | null>): QualityMetric[] {
  return QUALITY_METRICS.filter((metric) => sets.some((set) => set !== null && metric in set.values));
}

/** The metrics a set names, computed or not, in the console's order. */
export function metricsOf(set: QualitySet): QualityMetric[] {
  return QUALITY_METRICS.filter((metric) => metric in set.values || metric in set.unavailable);
}

/** A metric's value as it reads: KID and IS with their standard deviation ("0.0123 ± 0.0045"), "—" when absent. */
export function formatMetric(set: QualitySet | null, metric: QualityMetric): string {
  const value = set?.values[metric];
  if (value === undefined) return '—';
  const std = metric === 'kid' ? set?.values.kid_std : metric === 'is' ? set?.values.is_std : undefined;
  return std === undefined ? formatNumber(value) : `${formatNumber(value)} ± ${formatNumber(std, 2)}`;
}

/** How many images FID, KID and IS were estimated from, and KID's subsets and IS's splits; null when the set has none of them. */
export function sampleSizes(set: QualitySet): string | null {
  const { images, reference_images: references, kid_subsets: subsets, kid_subset_size: subsetSize, is_splits: splits } = set.values;
  const parts: string[] = [];
  if (images !== undefined) parts.push(`${images} generated`);
  if (references !== undefined) parts.push(`${references} reference`);
  const counts = parts.length === 0 ? '' : `${parts.join(' and ')} images`;
  const details: string[] = [];
  if ('kid' in set.values && subsets !== undefined) details.push(`KID over ${subsets} subsets${subsetSize === undefined ? '' : ` of ${subsetSize}`}`);
  if ('is' in set.values && splits !== undefined) details.push(`IS in ${splits} splits`);
  const text = [counts, details.join(', ')].filter((part) => part !== '').join('; ');
  return text === '' ? null : text;
}

/** Where a set comes from, as a table's cell says it. */
export function setLabel(set: QualitySet): string {
  return set.final ? `final set (step ${set.step})` : `step ${set.step}`;
}
