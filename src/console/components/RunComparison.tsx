// The training runs of one dataset side by side: what each trained (method, steps), how it
// stands, and its quality metrics (the final set's, else its latest validation's), a column
// for each metric any of them has. Refreshed while a run is still going.
import { type TrainingRun } from '../api.js';
import { useInterval, useLoad } from '../hooks.js';
import { ACTIVE_STATUSES, listRuns } from '../pages/Runs.js';
import { formatMetric, metricColumns, metricLabel, runQuality, setLabel } from '../quality-metrics.js';
import { Link } from '../router.js';
import { useSession } from '../session.js';
import { ErrorNotice } from './ErrorNotice.js';
import { QUALITY_READING } from './QualityPanel.js';
import { TableHead } from './TableHead.js';

/** Runs compared at most: 2 pages of 100, newest first (the API filters by dataset_id). */
const PAGES = 2;
const PAGE_SIZE = 100;
const REFRESH_MS = 5000;

function methodLabel(run: TrainingRun): string {
  return run.params.method === 'full' ? 'Full fine-tune' : 'LoRA';
}

export function RunComparison({ datasetId }: { datasetId: string }) {
  const { api } = useSession();
  const list = useLoad(() => listRuns(api, { pages: PAGES, pageSize: PAGE_SIZE, datasetId }), [api, datasetId]);
  const runs = list.data?.runs;
  useInterval(() => void list.reload(), REFRESH_MS, runs?.some((run) => ACTIVE_STATUSES.has(run.status)) ?? false);
  if (runs === undefined) return <ErrorNotice error={list.error} prefix="Could not load the training runs" />;

  const quality = new Map(runs.map((run) => [run.id, runQuality(run)]));
  const columns = metricColumns([...quality.values()]);
  return (
    <section aria-labelledby="dataset-runs-heading">
      <h2 id="dataset-runs-heading">Training runs ({runs.length}{list.data?.more ? '+' : ''})</h2>
      <ErrorNotice error={list.error} prefix="Could not refresh the training runs" />
      {runs.length === 0 ? (
        <p class="muted">No run has trained on this dataset yet.</p>
      ) : (
        <>
          <p class="hint">
            {columns.length === 0
              ? 'No run of this dataset has quality metrics: choose some under Validation when you start one.'
              : `Quality metrics of each run: its final set's, else its latest validation's. ${QUALITY_READING}`}
          </p>
          <div class="table-scroll">
            <table class="list" aria-labelledby="dataset-runs-heading">
              <TableHead columns={['Run', 'Method', 'Steps', 'Status', ...(columns.length === 0 ? [] : ['Scored']), ...columns.map(metricLabel)]} />
              <tbody>
                {runs.map((run) => {
                  const set = quality.get(run.id) ?? null;
                  return (
                    <tr key={run.id} data-run-id={run.id}>
                      <td data-label="Run"><Link to={`/runs/${run.id}`}>{run.name ?? run.id}</Link></td>
                      <td data-label="Method">{methodLabel(run)}</td>
                      <td data-label="Steps">{run.params.max_steps}</td>
                      <td data-label="Status"><span class={`status status-${run.status}`}>{run.status}</span></td>
                      {columns.length === 0 ? null : <td data-label="Scored">{set === null ? '—' : setLabel(set)}</td>}
                      {columns.map((metric) => (
                        <td key={metric} class="metric" data-label={metricLabel(metric)} data-metric={metric}>{formatMetric(set, metric)}</td>
                      ))}
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}
