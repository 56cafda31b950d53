// Captioning the whole dataset with a provider (Claude, an OpenAI-compatible model, or the
// free template sentence), following the job's progress until it ends.
import { useEffect, useState } from 'preact/hooks';
import { unwrap, type CaptioningJob } from '../api.js';
import { useInterval } from '../hooks.js';
import { useSession } from '../session.js';
import { ErrorNotice } from './ErrorNotice.js';
import { Progress } from './Progress.js';

const POLL_MS = 1000;
const PROVIDERS = [
  { value: '', label: "The server's default" },
  { value: 'template', label: 'Template sentence (offline, free)' },
  { value: 'anthropic', label: 'Claude (Anthropic)' },
  { value: 'openai-compatible', label: 'OpenAI-compatible vision model' },
] as const;

const isActive = (job: CaptioningJob | undefined) => job !== undefined && (job.status === 'queued' || job.status === 'running');

export function CaptioningPanel({ datasetId, onProgress }: { datasetId: string; onProgress: () => void }) {
  const { api } = useSession();
  const [provider, setProvider] = useState('');
  const [overwrite, setOverwrite] = useState(false);
  const [job, setJob] = useState<CaptioningJob | undefined>(undefined);
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);

  // The dataset's latest job, so a job started earlier (or elsewhere) shows here.
  useEffect(() => {
    unwrap(api.GET('/v1/datasets/{id}/captioning-jobs', { params: { path: { id: datasetId }, query: { limit: 1 } } })).then(
      (page) => setJob(page.data[0]),
      setError,
    );
  }, [api, datasetId]);

  useInterval(
    async () => {
      if (job === undefined) return;
      try {
        const latest = await unwrap(api.GET('/v1/captioning-jobs/{id}', { params: { path: { id: job.id } } }));
        if (latest.progress.done !== job.progress.done || latest.status !== job.status) onProgress();
        setJob(latest);
      } catch (caught) {
        setError(caught);
      }
    },
    POLL_MS,
    isActive(job),
  );

  const start = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const body = { overwrite, ...(provider === '' ? {} : { provider: provider as CaptioningJob['provider'] }) };
      setJob(await unwrap(api.POST('/v1/datasets/{id}/captioning-jobs', { params: { path: { id: datasetId } }, body })));
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  };

  const cancel = async () => {
    if (job === undefined) return;
    try {
      setJob(await unwrap(api.POST('/v1/captioning-jobs/{id}/cancel', { params: { path: { id: job.id } } })));
    } catch (caught) {
      setError(caught);
    }
  };

  return (
    <section class="card" aria-labelledby="captioning-heading">
      <h2 id="captioning-heading">Caption the photos</h2>
      <form onSubmit={start}>
        <div class="form-grid">
          <div class="field">
            <label for="caption-provider">Captioner</label>
            <select id="caption-provider" value={provider} onChange={(event) => setProvider(event.currentTarget.value)}>
              {PROVIDERS.map((option) => <option key={option.value} value={option.value}>{option.label}</option>)}
            </select>
          </div>
          <div class="field">
            <label class="check">
              <input type="checkbox" checked={overwrite} onChange={(event) => setOverwrite(event.currentTarget.checked)} />
              Also replace captions written by hand
            </label>
          </div>
        </div>
        <button type="submit" disabled={busy || isActive(job)}>Caption all photos</button>
      </form>
      <ErrorNotice error={error} />
      {job === undefined ? null : (
        <div class="stack" aria-live="polite">
          <p>
            Captioning job <span class={`status status-${job.status}`}>{job.status}</span>{' '}
            <span class="muted">({job.provider}, {job.model})</span>
          </p>
          <Progress
            label="Captioning progress"
            value={job.progress.done}
            max={Math.max(1, job.progress.total)}
            text={`${job.progress.done} / ${job.progress.total} · ${job.progress.succeeded} captioned, ${job.progress.skipped} kept, ${job.progress.failed} failed`}
          />
          {job.error === null ? null : <p class="error">{job.error.message}</p>}
          {job.errors.length === 0 ? null : (
            <ul class="error">{job.errors.map((failure) => <li key={failure.image_id}>{failure.image_id}: {failure.message}</li>)}</ul>
          )}
          {isActive(job) ? <button type="button" class="danger small" onClick={cancel}>Cancel captioning</button> : null}
        </div>
      )}
    </section>
  );
}
