// What issue 26 adds to a training run: `params.validation_split` and `params.max_epochs`,
// `progress.epoch` of `progress.epochs`, and `metrics.held_out_images`, read defensively
// from the run as it came (a run stored before them reads as no split, no epochs).
// Pure (no DOM), so test/console/large-dataset-runs.test.ts runs it under Node.

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const positive = (value: unknown): number | null => (typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : null);

function paramsOf(run: unknown): Record<string, unknown> {
  return isRecord(run) && isRecord(run.params) ? run.params : {};
}

/** The share of the dataset held out from training: 0 when none (or a service before issue 26). */
export function validationSplitOf(run: unknown): number {
  return positive(paramsOf(run).validation_split) ?? 0;
}

/** The epochs the run was given instead of a number of steps, or null. */
export function maxEpochsOf(run: unknown): number | null {
  return positive(paramsOf(run).max_epochs);
}

/** How many photos the run held out (its metrics, once it has them), or null. */
export function heldOutImagesOf(run: unknown): number | null {
  if (!isRecord(run) || !isRecord(run.metrics)) return null;
  const count = run.metrics.held_out_images;
  return typeof count === 'number' && Number.isFinite(count) && count >= 0 ? count : null;
}

/** "epoch 2 / 5" from a run's progress (a progress event's data), or null before the first step. */
export function epochText(progress: unknown): string | null {
  if (!isRecord(progress)) return null;
  const epoch = positive(progress.epoch);
  if (epoch === null) return null;
  const epochs = positive(progress.epochs);
  return epochs === null ? `epoch ${epoch}` : `epoch ${epoch} / ${epochs}`;
}

/** The chart's name for the validation loss: over the held-out photos when the run holds some out. */
export function validationLossLabel(run: unknown): string {
  return validationSplitOf(run) > 0 ? 'held-out loss' : 'validation loss';
}
