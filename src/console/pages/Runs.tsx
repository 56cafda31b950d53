// Every training run of this key's tenant, newest first, refreshed while any is still going.
import { useState } from 'preact/hooks';
import { unwrap, type ApiClient, type Dataset, type TrainingRun } from '../api.js';
import { ErrorNotice } from '../components/ErrorNotice.js';
import { TableHead } from '../components/TableHead.js';
import { formatTime } from '../format.js';
import { useInterval, useLoad } from '../hooks.js';
import { Link } from '../router.js';
import { useSession } from '../session.js';

const PAGE_SIZE = 50;
const REFRESH_MS = 3000;
export const ACTIVE_STATUSES: ReadonlySet<string> = new Set(['queued', 'starting', 'running']);

interface RunList {
  runs: TrainingRun[];
  more: boolean;
  datasets: Map<string, Dataset>;
}

/** The first `pages` pages of `pageSize` runs, newest first, of one dataset or all; `more` when there are older ones. */
export async function listRuns(
  api: ApiClient,
  { pages, pageSize = PAGE_SIZE, datasetId }: { pages: number; pageSize?: number; datasetId?: string },
): Promise<{ runs: TrainingRun[]; more: boolean }> {
  const runs: TrainingRun[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < pages; page++) {
    const query = { limit: pageSize, ...(datasetId === undefined ? {} : { dataset_id: datasetId }), ...(cursor === null ? {} : { cursor }) };
    const body: { data: TrainingRun[]; next_cursor: string | null } = await unwrap(api.GET('/v1/training-runs', { params: { query } }));
    runs.push(...body.data);
    cursor = body.next_cursor;
    if (cursor === null) break;
  }
  return { runs, more: cursor !== null };
}

/** The first `pages` pages of runs (a refresh reloads all that are shown), and the datasets' names. */
async function loadRuns(api: ApiClient, pages: number): Promise<RunList> {
  const { runs, more } = await listRuns(api, { pages });
  // Names for the dataset column; a run whose dataset is gone (or past this page) shows its id.
  const datasets = await unwrap(api.GET('/v1/datasets', { params: { query: { limit: 100 } } }));
  return { runs, more, datasets: new Map(datasets.data.map((dataset) => [dataset.id, dataset])) };
}

function progressText(run: TrainingRun): string {
  if (run.status === 'succeeded') return '100%';
  if (run.progress === null) return '—';
  return `${run.progress.percent}%`;
}

export function RunsPage() {
  const { api } = useSession();
  const [pages, setPages] = useState(1);
  const list = useLoad(() => loadRuns(api, pages), [api, pages]);
  const runs = list.data?.runs;
  useInterval(() => void list.reload(), REFRESH_MS, runs?.some((run) => ACTIVE_STATUSES.has(run.status)) ?? false);

  return (
    <>
      <h1>Training runs</h1>
      <div class="toolbar">
        <Link to="/runs/new" class="button">New training run</Link>
      </div>
      <ErrorNotice error={list.error} prefix="Could not load the training runs" />
      {runs === undefined ? (
        list.error === undefined ? <p class="muted">Loading…</p> : null
      ) : runs.length === 0 ? (
        <p class="muted">No training runs yet. Start one with New training run, or from a dataset's page.</p>
      ) : (
        <>
          <table class="list">
            <TableHead columns={['Name', 'Dataset', 'Model', 'Status', 'Progress', 'Created']} />
            <tbody>
              {runs.map((run) => (
                <tr key={run.id} data-run-id={run.id}>
                  <td data-label="Name"><Link to={`/runs/${run.id}`}>{run.name ?? run.id}</Link></td>
                  <td data-label="Dataset">
                    <Link to={`/datasets/${run.dataset_id}`}>{list.data?.datasets.get(run.dataset_id)?.name ?? run.dataset_id}</Link>
                  </td>
                  <td data-label="Model">{run.model}</td>
                  <td data-label="Status"><span class={`status status-${run.status}`}>{run.status}</span></td>
                  <td data-label="Progress">{progressText(run)}</td>
                  <td data-label="Created"><time dateTime={run.created_at}>{formatTime(run.created_at)}</time></td>
                </tr>
              ))}
            </tbody>
          </table>
          {list.data?.more ? (
            <div class="toolbar">
              <button type="button" class="secondary" disabled={list.loading} onClick={() => setPages(pages + 1)}>Show older runs</button>
            </div>
          ) : null}
        </>
      )}
    </>
  );
}
