// A run's quality metrics next to its loss chart: the latest scored set (the final one once
// the run has made it), each metric with its short label, or why it was not computed, and
// the validations' scores by step. Nothing at all for a run that asked for no metric and
// has none.
import { Fragment } from 'preact';
import {
  formatMetric,
  latestSet,
  metricColumns,
  metricLabel,
  metricsOf,
  sampleSizes,
  setLabel,
  type QualitySet,
} from '../quality-metrics.js';
import { TableHead } from './TableHead.js';

export const QUALITY_READING =
  'Higher is better for CLIP-T (prompt fidelity), CLIP-I (likeness to the dataset), HPS (preference), LPIPS (diversity) and IS; lower for FID and KID.';

export interface QualityPanelProps {
  /** The sets the event stream has scored, in step order (the final set last). */
  sets: readonly QualitySet[];
  /** The run resource's quality_metrics: shown until the stream has said something. */
  fallback: QualitySet | null;
  /** The metrics the run asked for (params.validation.metrics). */
  requested: readonly string[];
}

export function QualityPanel({ sets, fallback, requested }: QualityPanelProps) {
  const latest = latestSet(sets) ?? fallback;
  if (latest === null && requested.length === 0) return null;
  const rows = sets.length > 0 ? sets : fallback === null ? [] : [fallback];
  const columns = metricColumns(rows);
  const sizes = latest === null ? null : sampleSizes(latest);
  return (
    <section class="card" aria-labelledby="run-quality-heading">
      <h2 id="run-quality-heading">Quality</h2>
      {latest === null ? (
        <p class="muted">
          No scores yet: {requested.map(metricLabel).join(', ')} {requested.length === 1 ? 'is' : 'are'} computed at each validation and on the final set.
        </p>
      ) : (
        <>
          <p class="muted">Latest scores: {setLabel(latest)}.</p>
          <dl class="facts" aria-label="Latest quality metrics">
            {metricsOf(latest).map((metric) => (
              <Fragment key={metric}>
                <dt>{metricLabel(metric)}</dt>
                <dd data-metric={metric}>
                  {metric in latest.values ? formatMetric(latest, metric) : <span class="muted">unavailable: {latest.unavailable[metric]}</span>}
                </dd>
              </Fragment>
            ))}
          </dl>
          {sizes === null ? null : <p class="hint">FID, KID and IS from {sizes}.</p>}
          <p class="hint">{QUALITY_READING}</p>
        </>
      )}
      {rows.length === 0 || columns.length === 0 ? null : (
        <>
          <h3 id="run-quality-steps-heading">By validation</h3>
          <div class="table-scroll">
            <table class="list" aria-labelledby="run-quality-steps-heading">
              <TableHead columns={['Step', ...columns.map(metricLabel)]} />
              <tbody>
                {rows.map((set) => (
                  <tr key={`${set.step}-${set.final}`} data-final={set.final ? 'true' : undefined}>
                    <td data-label="Step">{set.final ? <strong>{setLabel(set)}</strong> : set.step}</td>
                    {columns.map((metric) => (
                      <td key={metric} class="metric" data-label={metricLabel(metric)}>
                        {metric in set.values ? formatMetric(set, metric) : metric in set.unavailable ? <span class="muted" title={set.unavailable[metric]}>unavailable</span> : '—'}
                      </td>
                    ))}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}
