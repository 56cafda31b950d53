// What a run trains on and for how long, decided when it is created: the held-out
// validation split (params.validation_split) and, for a run given max_epochs, the
// optimizer steps those epochs take over the training part of the dataset.
import { createHash } from 'node:crypto';
import { batchesPerEpoch, TrainConfig } from '../engine/index.js';
import { fieldError, type FieldError } from '../errors.js';
import { MAX_STEPS, trainConfigFields, type ResolvedTrainingParams } from '../schemas/training-params.js';

/** A TrainConfig field's default: what the trainer uses for a field no param sets. */
const configDefault = (field: 'resolution' | 'minResolution' | 'bucketStep' | 'minBucketSide' | 'maxBucketSide'): number =>
  (TrainConfig.properties[field] as unknown as { default: number }).default;

/**
 * Where an image falls in [0, 1) for the split: a hash of its sha256 under a fixed salt, not
 * the run's seed, so every run of a dataset holds out the same images and their validation
 * losses compare (and a run resumed elsewhere recomputes the same split).
 */
function splitPoint(sha256: string): number {
  const digest = createHash('sha256').update(`validation-split:${sha256}`).digest();
  return digest.readUIntBE(0, 6) / 2 ** 48;
}

export interface Split<Image> {
  training: Image[];
  heldOut: Image[];
}

/**
 * The images whose split point is below `share` are held out, in their given order; at
 * least one when share > 0 (the lowest point), and never all of them (the highest stays).
 * The caller has refused a split of fewer than two images (splitConflicts).
 */
export function splitHeldOut<Image extends { sha256: string }>(images: Image[], share: number): Split<Image> {
  if (share <= 0 || images.length < 2) return { training: images, heldOut: [] };
  const points = new Map(images.map((image) => [image, splitPoint(image.sha256)]));
  const byPoint = [...images].sort((a, b) => points.get(a)! - points.get(b)!);
  const held = new Set(byPoint.filter((image) => points.get(image)! < share));
  if (held.size === 0) held.add(byPoint[0]!);
  if (held.size === images.length) held.delete(byPoint[byPoint.length - 1]!);
  return { training: images.filter((image) => !held.has(image)), heldOut: images.filter((image) => held.has(image)) };
}

/** 400s of the split and the epochs: a split of a one-image dataset, max_epochs beside an explicit max_steps. */
export function dataPlanConflicts(params: ResolvedTrainingParams, maxStepsGiven: boolean, imageCount: number): FieldError[] {
  const errors: FieldError[] = [];
  if (params.validation_split > 0 && imageCount < 2) {
    errors.push(fieldError('body', 'params.validation_split', `holds images out of training, and the dataset has ${imageCount}: ` +
      'it needs at least 2 (one to train on, one to validate on)'));
  }
  if (params.min_resolution !== null && params.min_resolution > params.resolution) {
    errors.push(fieldError('body', 'params.min_resolution', `is ${params.min_resolution}, above resolution (${params.resolution}): ` +
      'it is the smallest of the resolutions images train at'));
  }
  if (params.max_epochs !== null && maxStepsGiven) {
    errors.push(fieldError('body', 'params.max_epochs', 'and max_steps both say how long to train: give one of them'));
  }
  return errors;
}

/** What the trainer's bucketing is told of a run's params (batchesPerEpoch's plan without its images). */
function epochPlan(params: ResolvedTrainingParams) {
  const fields = trainConfigFields(params);
  return {
    resolution: fields.resolution ?? configDefault('resolution'),
    minResolution: fields.minResolution ?? configDefault('minResolution'),
    bucketStep: fields.bucketStep ?? configDefault('bucketStep'),
    minBucketSide: fields.minBucketSide ?? configDefault('minBucketSide'),
    maxBucketSide: fields.maxBucketSide ?? configDefault('maxBucketSide'),
    repeats: params.repeats,
    batchSize: params.batch_size,
  };
}

/**
 * A field error naming min_resolution when every one of `training` (sizes as displayed) is below it: the trainer
 * would skip them all. Asked of the trainer's own bucketing.
 */
export function resolutionConflict(params: ResolvedTrainingParams, training: Array<{ width: number; height: number }>): FieldError | undefined {
  if (params.min_resolution === null || training.length === 0) return undefined;
  try {
    batchesPerEpoch({ images: training.map(({ width, height }) => ({ width, height })), ...epochPlan(params) });
    return undefined;
  } catch (error) {
    if (!(error instanceof Error) || !/below min_resolution/.test(error.message)) throw error;
    const smallest = Math.min(...training.map(({ width, height }) => Math.min(width, height)));
    return fieldError('body', 'params.min_resolution', `is ${params.min_resolution}, and every one of the ${training.length} images ` +
      `trained on is smaller (fewer pixels than ${params.min_resolution} x ${params.min_resolution}; the smallest side is ${smallest}): nothing would train`);
  }
}

/**
 * The optimizer steps of `epochs` passes over `training` (sizes as displayed): the trainer's
 * micro-batches per epoch (its buckets, repeats and batch size, without the images below
 * min_resolution) times epochs, over the gradient accumulation, rounded up. A field error
 * naming max_epochs when that is beyond MAX_STEPS.
 */
export function stepsOfEpochs(
  params: ResolvedTrainingParams, epochs: number, training: Array<{ width: number; height: number }>,
): number | FieldError {
  const batches = batchesPerEpoch({ images: training.map(({ width, height }) => ({ width, height })), ...epochPlan(params) });
  const steps = Math.ceil((epochs * batches) / params.gradient_accumulation);
  if (steps > MAX_STEPS) {
    return fieldError('body', 'params.max_epochs', `${epochs} epochs of ${batches} batches are ${steps} steps, more than the ` +
      `${MAX_STEPS} a run may take: give fewer epochs`);
  }
  return steps;
}
