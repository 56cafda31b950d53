// The loss chart's data: training loss by reported step, and the validation loss (over the
// held-out photos when the run has a validation_split) at the steps that validated, on one
// step axis as uPlot wants it (every series as long as the steps, null where a series has
// no point). Pure (no DOM), so test/console/loss-series.test.ts runs it under Node.

/** Loss by step, aligned: one entry per reported step, in step order. */
export interface LossSeries {
  steps: number[];
  loss: Array<number | null>;
  /** The trainer's mean of the last 50 steps. */
  avg: Array<number | null>;
}

export interface ValidationPoint {
  step: number;
  loss: number;
}

/** [steps, loss, avg, validation loss]: the union of both series' steps, ascending. */
export function alignedLoss(series: LossSeries, validation: readonly ValidationPoint[]): [number[], Array<number | null>, Array<number | null>, Array<number | null>] {
  const byStep = new Map<number, number>();
  for (const point of validation) byStep.set(point.step, point.loss);
  const steps = [...new Set([...series.steps, ...byStep.keys()])].sort((a, b) => a - b);
  const training = new Map(series.steps.map((step, i) => [step, i]));
  const at = (values: Array<number | null>, step: number) => {
    const i = training.get(step);
    return i === undefined ? null : values[i] ?? null;
  };
  return [steps, steps.map((step) => at(series.loss, step)), steps.map((step) => at(series.avg, step)), steps.map((step) => byStep.get(step) ?? null)];
}
