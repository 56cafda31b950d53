// Image-quality metrics from TypeScript (issue 25): which metrics the networks under a
// metrics models folder make available (file checks only), and scoring a set of images
// (CLIP-T, CLIP-I, HPS, LPIPS diversity, FID, KID, Inception Score) on a native thread.
// Arguments are checked here with errors naming the field, as for the other jobs.
import {
  checkObject,
  checkPath,
  checkProgressCallback,
  checkRuntime,
  checkSeed,
  checkString,
  EngineArgumentError,
  expected,
} from './checks.js';
import { failedJob, startJob, type EngineJob } from './jobs.js';
import { loadNativeAddon } from './native.js';
import { METRIC_NAMES, type EvaluateImage, type EvaluateOptions, type EvaluateResult, type MetricName, type MetricNetwork, type Progress, type ProgressCallback } from './types.js';

/** Images one evaluate() call scores at most (of each set). */
const MAX_EVALUATE_IMAGES = 10_000;
const MAX_IMAGE_SIDE = 8192;

/** The metric names, each once; throws naming `name[i]` for an unknown or repeated one. */
export function checkMetricNames(name: string, value: unknown): MetricName[] {
  if (!Array.isArray(value)) expected(`an array of ${METRIC_NAMES.join(', ')}`, name, value);
  return value.map((metric: unknown, index) => {
    if (!METRIC_NAMES.includes(metric as MetricName)) expected(`one of ${METRIC_NAMES.join(', ')}`, `${name}[${index}]`, metric);
    if (value.indexOf(metric) !== index) throw new EngineArgumentError(`${name}[${index}] repeats "${String(metric)}"`);
    return metric as MetricName;
  });
}

function checkImages(name: string, value: unknown): EvaluateImage[] {
  if (!Array.isArray(value) || value.length > MAX_EVALUATE_IMAGES) expected(`an array of at most ${MAX_EVALUATE_IMAGES} images`, name, value);
  return value.map((entry: unknown, index) => {
    const at = `${name}[${index}]`;
    const image = checkObject(at, entry);
    const side = (field: 'width' | 'height') => {
      const size = image[field];
      if (typeof size !== 'number' || !Number.isInteger(size) || size < 1 || size > MAX_IMAGE_SIDE) {
        expected(`an integer from 1 to ${MAX_IMAGE_SIDE}`, `${at}.${field}`, size);
      }
      return size;
    };
    const width = side('width');
    const height = side('height');
    if (!(image.rgb instanceof Uint8Array) || image.rgb.length !== width * height * 3) {
      expected(`a Buffer of width * height * 3 = ${width * height * 3} bytes`, `${at}.rgb`, image.rgb);
    }
    return {
      name: checkString(`${at}.name`, image.name, { allowEmpty: false }),
      width,
      height,
      rgb: image.rgb,
      ...(image.caption === undefined ? {} : { caption: checkString(`${at}.caption`, image.caption) }),
    };
  });
}

export function validateEvaluateOptions(value: unknown): EvaluateOptions {
  const options = checkObject('options', value);
  return {
    modelsDir: checkPath('options.modelsDir', options.modelsDir, 'directory'),
    metrics: checkMetricNames('options.metrics', options.metrics),
    images: checkImages('options.images', options.images),
    ...(options.references === undefined ? {} : { references: checkImages('options.references', options.references) }),
    ...(options.seed === undefined ? {} : { seed: checkSeed('options.seed', options.seed) }),
    ...(options.device === undefined ? {} : { device: checkRuntime({ device: options.device }).device! }),
  };
}

/** For each metric, whether its network's files are under `modelsDir` and, when not, why. */
export function metricNetworks(modelsDir: string): MetricNetwork[] {
  return loadNativeAddon().metricNetworks(checkPath('modelsDir', modelsDir, 'directory'));
}

/**
 * Scores `images` (against `references` for clip_i, fid and kid) with `metrics`. A metric that cannot be
 * computed is in the result's `unavailable` with why; invalid options give a job whose promise rejects.
 */
export function evaluate(options: EvaluateOptions, onProgress?: ProgressCallback): EngineJob<EvaluateResult> {
  const caller = new Error();
  try {
    const checked = validateEvaluateOptions(options);
    const callback = checkProgressCallback(onProgress);
    return startJob(caller, callback, (report) => loadNativeAddon().evaluate(checked, report));
  } catch (error) {
    return failedJob(error);
  }
}

/** What one training progress report says of the quality metrics: its scored values, what could not be scored, and whether it is the final set. */
export interface ReportedScores {
  values: Record<string, number>;
  unavailable: Record<string, string>;
  final: boolean;
}

const VALUE_PREFIX = 'metric_';
const UNAVAILABLE_PREFIX = 'unavailable_';
const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Reads a report's `metric_<key>` values, its `unavailable_<metric>: 1` flags (each with the reason its message
 * gives, "clip_t unavailable: ..."), and `final_set: 1`. Empty when the report scored nothing.
 */
export function reportedScores(report: Progress): ReportedScores {
  const values: Record<string, number> = {};
  const unavailable: Record<string, string> = {};
  for (const [key, value] of Object.entries(report.metrics)) {
    if (key.startsWith(VALUE_PREFIX) && Number.isFinite(value)) values[key.slice(VALUE_PREFIX.length)] = value;
    if (key.startsWith(UNAVAILABLE_PREFIX) && value > 0) {
      const metric = key.slice(UNAVAILABLE_PREFIX.length);
      const said = new RegExp(`(?:^|[\\n;]\\s*)${escapeRegExp(metric)} unavailable: ([^\\n;]*)`).exec(report.message);
      unavailable[metric] = said?.[1]?.trim() || 'not computed';
    }
  }
  return { values, unavailable, final: report.metrics.final_set === 1 };
}
