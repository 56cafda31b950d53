// Scoring a generation's images with the quality metrics it asked for (params.evaluation):
// against its prompt (clip_t, hps) and, for clip_i, fid and kid, against a dataset's images,
// decoded as training decodes them. Nothing here fails a generation: a metric that cannot be
// computed (no network, too few images, the reference dataset gone, an engine error) is
// reported in `unavailable` with why.
import type { Database } from '../db/database.js';
import { decodeTrainImage, evaluate, type EvaluateImage, type MetricName, type RgbImage } from '../engine/index.js';
import { createCaptionsRepository } from '../repositories/captions.js';
import { createDatasetsRepository } from '../repositories/datasets.js';
import type { EvaluationRequest } from '../schemas/generations.js';
import type { ScoredImages } from '../schemas/quality-metrics.js';
import type { BlobStore } from '../storage/blob-store.js';
import type { QualityMetricsService } from './quality-metrics.js';

/** Longest side a reference image is decoded at: the metrics' networks see 299 (Inception) or 224 (CLIP) pixels. */
const REFERENCE_MAX_SIDE = 1024;
const NEEDS_REFERENCES: readonly MetricName[] = ['clip_i', 'fid', 'kid'];

export interface ImageEvaluationOptions {
  db: Database;
  blobs: BlobStore;
  qualityMetrics: QualityMetricsService;
  /** Where the metrics' networks run (the generations' device). */
  device: string;
}

/** What a generation's images are scored with: the request, the prompt, the seed (KID subsets, IS splits). */
export interface EvaluationInput {
  tenantId: string;
  request: EvaluationRequest;
  prompt: string;
  seed: number;
}

const unavailableAll = (metrics: readonly string[], why: string) => Object.fromEntries(metrics.map((metric) => [metric, why]));

export class ImageEvaluationService {
  constructor(private readonly options: ImageEvaluationOptions) {}

  /** The request's metrics of `images`; `signal` stops the scoring (what was not scored is then unavailable). */
  async evaluate(input: EvaluationInput, images: RgbImage[], signal: AbortSignal): Promise<ScoredImages> {
    const { qualityMetrics, device } = this.options;
    const metrics = input.request.metrics as MetricName[];
    const modelsDir = qualityMetrics.engineModelsDir;
    if (modelsDir === '') {
      const why = qualityMetrics.list().find((entry) => !entry.available)?.reason ?? 'no metrics models folder';
      return { values: {}, unavailable: unavailableAll(metrics, why) };
    }
    let references: EvaluateImage[] | undefined;
    const unavailable: Record<string, string> = {};
    if (input.request.reference_dataset_id !== undefined && metrics.some((metric) => NEEDS_REFERENCES.includes(metric))) {
      try {
        references = await this.#references(input.tenantId, input.request.reference_dataset_id);
      } catch (error) {
        const why = error instanceof Error ? error.message : String(error);
        Object.assign(unavailable, unavailableAll(metrics.filter((metric) => NEEDS_REFERENCES.includes(metric)), why));
      }
    }
    const scored = metrics.filter((metric) => !(metric in unavailable));
    if (scored.length === 0) return { values: {}, unavailable };
    const job = evaluate({
      modelsDir,
      metrics: scored,
      device,
      seed: input.seed,
      images: images.map((image, index) => ({ name: `image-${index}`, width: image.width, height: image.height, rgb: image.rgb, caption: input.prompt })),
      ...(references === undefined ? {} : { references }),
    });
    const stop = () => job.cancel();
    signal.addEventListener('abort', stop, { once: true });
    try {
      const result = await job.promise;
      return { values: result.values, unavailable: { ...unavailable, ...result.unavailable } };
    } catch (error) {
      const why = `could not be scored: ${error instanceof Error ? error.message : String(error)}`;
      return { values: {}, unavailable: { ...unavailable, ...unavailableAll(scored, why) } };
    } finally {
      signal.removeEventListener('abort', stop);
    }
  }

  /** The dataset's images with their captions, decoded as training decodes them. */
  async #references(tenantId: string, datasetId: string): Promise<EvaluateImage[]> {
    const { db, blobs } = this.options;
    const dataset = await createDatasetsRepository(db).findById(tenantId, datasetId);
    if (dataset === null) throw new Error(`the reference dataset ${datasetId} no longer exists`);
    const rows = await createCaptionsRepository(db).allForDataset(tenantId, datasetId);
    const decoded: EvaluateImage[] = [];
    for (const [index, row] of rows.entries()) {
      const data = await blobs.get(row.sha256);
      if (data === null) throw new Error(`image ${row.image_id} of the reference dataset is missing from storage`);
      const caption = row.caption_row?.caption ?? `a photo of ${dataset.trigger_token} ${dataset.class_word}`;
      const image = await decodeTrainImage({ name: row.image_id, caption, data }, index, REFERENCE_MAX_SIDE);
      decoded.push({ name: image.name, width: image.width, height: image.height, rgb: image.rgb, caption: image.caption });
    }
    return decoded;
  }
}
