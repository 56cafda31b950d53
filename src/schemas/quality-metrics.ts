// Image-quality metrics (issue 25): which ones this server can compute (GET /v1/quality-metrics),
// and a scored set of images as runs (quality_metrics) and generations (evaluation) show it.
import { Type, type Static } from 'typebox';
import { METRIC_NAMES, METRIC_NETWORK_NAMES, type MetricName as MetricNameValue } from '../engine/types.js';

/** What each metric measures, as the API describes it. */
export const METRIC_DESCRIPTIONS: Record<MetricNameValue, string> = {
  clip_t: "Prompt fidelity (DreamBooth's CLIP-T, torchmetrics' CLIPScore): 100 x max(mean cosine of each image's and its prompt's CLIP embeddings, 0). Needs prompts",
  clip_i: "Subject fidelity (DreamBooth's CLIP-I): mean cosine of the CLIP image embeddings of every generated image and every reference (dataset) image",
  hps: 'Human preference (HPSv2-style): mean cosine of the OpenCLIP image and prompt features. Needs prompts',
  lpips: "Diversity (DreamBooth's DIV): mean LPIPS distance over pairs of generated images of the same prompt. Needs 2 or more images of one prompt",
  fid: 'Frechet Inception Distance of the generated against the reference images (lower is closer). Needs 2 or more of each; meaningful from tens',
  kid: 'Kernel Inception Distance (mean; kid_std, kid_subsets and kid_subset_size too): 100 subsets of min(1000, generated, references) images. Needs 2 or more of each',
  is: 'Inception Score (mean; is_std and is_splits too), splits = min(10, floor(images / 2)). Needs 2 or more images',
};

export const MetricName = Type.Enum([...METRIC_NAMES], { description: 'A quality metric (GET /v1/quality-metrics)' });

export const QualityMetric = Type.Object(
  {
    metric: MetricName,
    network: Type.Enum([...METRIC_NETWORK_NAMES], { description: 'The network it needs: a folder of METRICS_MODELS_DIR (inception, lpips, clip, hps)' }),
    available: Type.Boolean({ description: "Whether the network's files are on this server: runs may ask it (params.validation.metrics)" }),
    reason: Type.Union([Type.String(), Type.Null()], { description: 'Why it is not available; null when it is' }),
    description: Type.String(),
  },
  { additionalProperties: false },
);
export type QualityMetric = Static<typeof QualityMetric>;

export const QualityMetricList = Type.Object(
  { data: Type.Array(QualityMetric, { description: 'Every metric, in a fixed order' }) },
  { additionalProperties: false },
);

const Values = Type.Record(Type.String(), Type.Number(), {
  description: 'Each computed metric by name (clip_t, fid, ...) and what it was computed from: images, reference_images, kid_std, ' +
    'kid_subsets, kid_subset_size, is_std, is_splits',
});
const Unavailable = Type.Record(Type.String(), Type.String(), {
  description: 'Each asked metric that could not be computed (its network missing, too few images, no prompt), with why',
});

/** A scored set of images: what was computed, and what could not be. */
export const ScoredImages = Type.Object({ values: Values, unavailable: Unavailable }, { additionalProperties: false });
export type ScoredImages = Static<typeof ScoredImages>;

/** A run's latest scored validation set. */
export const RunQualityMetrics = Type.Object(
  {
    step: Type.Integer({ minimum: 0, description: 'The step whose validation images were scored' }),
    final: Type.Boolean({ description: 'The end-of-run set (validation.final_images per prompt, every metric)' }),
    values: Values,
    unavailable: Unavailable,
  },
  { additionalProperties: false },
);
export type RunQualityMetrics = Static<typeof RunQualityMetrics>;
