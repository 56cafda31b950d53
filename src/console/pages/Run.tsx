// One training run, live: its facts, progress, loss chart, quality metrics, validation images, log and
// files. The event stream replays every event from the run's start, so a reload rebuilds
// the chart and the log; events are applied in batches (a replay brings thousands at once).
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import { followEvents } from '../../../openapi/client/index.js';
import { download, unwrap, type TrainingRun, type TrainingRunArtifact, type TrainingRunEvent } from '../api.js';
import { AuthImage } from '../components/AuthImage.js';
import { ErrorNotice } from '../components/ErrorNotice.js';
import { LossChart } from '../components/LossChart.js';
import { Progress } from '../components/Progress.js';
import { QualityPanel } from '../components/QualityPanel.js';
import { TableHead } from '../components/TableHead.js';
import { formatBytes, formatDuration, formatNumber, formatTime } from '../format.js';
import { useInterval, useLoad } from '../hooks.js';
import { epochText, heldOutImagesOf, maxEpochsOf, validationLossLabel, validationSplitOf } from '../large-dataset-runs.js';
import type { LossSeries, ValidationPoint } from '../loss-series.js';
import { qualitySetOf, requestedQuality, runQuality, type QualitySet } from '../quality-metrics.js';
import { Link } from '../router.js';
import { useSession } from '../session.js';
import { ACTIVE_STATUSES } from './Runs.js';

type RunProgress = NonNullable<TrainingRun['progress']>;

interface ValidationImage {
  name: string;
  content_url: string;
}

interface ValidationResult {
  step: number;
  /** The end-of-run set (validation.final_images per prompt): at the last step, beside that step's own validation. */
  final: boolean;
  loss: number | null;
  images: ValidationImage[];
  /** Its quality metrics, when the run asked for any. */
  quality: QualitySet | null;
}

/** What the event stream has said so far. */
interface StreamState {
  /** The last status event's status. */
  status: string | undefined;
  progress: RunProgress | undefined;
  series: LossSeries;
  /** By step, ascending, the final set last; a resumed run's repeat of a step replaces it. */
  validations: ValidationResult[];
  log: string[];
  /** Log lines left out at the start (the page keeps the last MAX_LOG_LINES). */
  logDropped: number;
}

const MAX_LOG_LINES = 2000;
/** Events are applied this often at most: one render per batch, not per event. */
const BATCH_MS = 100;
/** The run and its files are fetched again at most this often while events say they changed. */
const RELOAD_MS = 1000;
/** Events that say the run wrote files (validation images come with their validation). */
const FILE_EVENTS: ReadonlySet<string> = new Set(['artifact', 'checkpoint', 'validation']);
const FINISHED: ReadonlySet<string> = new Set(['succeeded', 'failed', 'canceled']);

const EMPTY: StreamState = {
  status: undefined,
  progress: undefined,
  series: { steps: [], loss: [], avg: [] },
  validations: [],
  log: [],
  logDropped: 0,
};

const numberOrNull = (value: unknown): number | null => (typeof value === 'number' && Number.isFinite(value) ? value : null);

function clock(iso: string): string {
  return new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

/** The stream's state after a batch of events, in order. */
function applyEvents(state: StreamState, events: readonly TrainingRunEvent[]): StreamState {
  let { status, progress, validations, logDropped } = state;
  const steps = [...state.series.steps];
  const loss = [...state.series.loss];
  const avg = [...state.series.avg];
  const log = [...state.log];
  let plotted = false;
  for (const event of events) {
    const data = event.data;
    switch (event.type) {
      case 'progress': {
        progress = data as unknown as RunProgress;
        // Only training reports are points: the others repeat the last training step's loss.
        const lossValue = numberOrNull(data.loss);
        if (progress.phase !== 'training' || lossValue === null) break;
        // A run resumed from a checkpoint trains some steps again: the new ones replace the old.
        while (steps.length > 0 && steps[steps.length - 1]! >= progress.step) {
          steps.pop();
          loss.pop();
          avg.pop();
        }
        plotted = true;
        steps.push(progress.step);
        loss.push(lossValue);
        avg.push(numberOrNull(data.loss_avg));
        break;
      }
      case 'validation': {
        const step = numberOrNull(data.step) ?? 0;
        const images = Array.isArray(data.images) ? (data.images as ValidationImage[]) : [];
        const final = data.final === true;
        const result = { step, final, loss: numberOrNull(data.validation_loss), images, quality: qualitySetOf(data, step) };
        validations = [...validations.filter((other) => other.step !== step || other.final !== final), result].sort(
          (a, b) => a.step - b.step || Number(a.final) - Number(b.final),
        );
        break;
      }
      case 'log':
        log.push(`${clock(event.created_at)} ${String(data.level ?? 'info').padEnd(5)} ${String(data.message ?? '')}`);
        break;
      case 'status': {
        status = String(data.status);
        const error = data.error as { code?: string; message?: string } | null | undefined;
        const attempt = numberOrNull(data.attempt);
        log.push(
          `${clock(event.created_at)} ${'—'.padEnd(5)} status ${status}` +
            (attempt === null || attempt === 0 ? '' : ` (attempt ${attempt})`) +
            (error ? `: ${error.code ?? 'error'}: ${error.message ?? ''}` : ''),
        );
        break;
      }
      default:
        break; // artifact, checkpoint: the file list is fetched again (FILE_EVENTS)
    }
  }
  if (log.length > MAX_LOG_LINES) {
    logDropped += log.length - MAX_LOG_LINES;
    log.splice(0, log.length - MAX_LOG_LINES);
  }
  // A batch without a training report keeps the same series: the chart is not fed again.
  const series = plotted ? { steps, loss, avg } : state.series;
  return { status, progress, series, validations, log, logDropped };
}

/** Calls `fn` at most once per `ms`, the last call never lost. */
function trailing(fn: () => void, ms: number): { call: () => void; cancel: () => void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let last = 0;
  return {
    call() {
      if (timer !== undefined) return;
      timer = setTimeout(() => {
        timer = undefined;
        last = Date.now();
        fn();
      }, Math.max(0, last + ms - Date.now()));
    },
    cancel: () => clearTimeout(timer),
  };
}

function progressText(progress: RunProgress | undefined, status: string | undefined): string {
  if (progress === undefined) return status === 'queued' ? 'Waiting for a worker' : status ?? '—';
  const epoch = epochText(progress);
  const parts = [`step ${progress.step} / ${progress.total_steps}`, ...(epoch === null ? [] : [epoch]), `${formatNumber(progress.percent, 3)}%`];
  if (progress.phase === 'training') {
    if (progress.eta_seconds !== null) parts.push(`ETA ${formatDuration(progress.eta_seconds)}`);
  } else if (status === undefined || !FINISHED.has(status)) {
    parts.push(progress.phase); // loading, caching, validating, saving: the status badge says the rest
  }
  return parts.join(' · ');
}

/** The most memory the run has held on its device: its final metrics, else its last progress. */
function peakMemory(run: TrainingRun): number | undefined {
  return run.metrics?.peak_memory_bytes ?? run.progress?.peak_memory_bytes ?? undefined;
}

/** The validation loss of each validated step; the end-of-run set's only where that step has no other. */
function validationPoints(validations: readonly ValidationResult[]): ValidationPoint[] {
  const points = new Map<number, number>();
  for (const validation of validations) {
    if (validation.loss !== null && (!validation.final || !points.has(validation.step))) points.set(validation.step, validation.loss);
  }
  return [...points].map(([step, loss]) => ({ step, loss }));
}

function basename(name: string): string {
  return name.split('/').pop() ?? name;
}

export function RunPage({ id }: { id: string }) {
  const { api, apiKey } = useSession();
  const run = useLoad(() => unwrap(api.GET('/v1/training-runs/{id}', { params: { path: { id } } })), [api, id]);
  const artifacts = useLoad(
    () => unwrap(api.GET('/v1/training-runs/{id}/artifacts', { params: { path: { id } } })).then((body) => body.data),
    [api, id],
  );
  const datasetId = run.data?.dataset_id;
  const dataset = useLoad(
    async () => (datasetId === undefined ? undefined : unwrap(api.GET('/v1/datasets/{id}', { params: { path: { id: datasetId } } }))),
    [api, datasetId],
  );
  const [stream, setStream] = useState<StreamState>(EMPTY);
  const [streamError, setStreamError] = useState<unknown>(undefined);
  const [actionError, setActionError] = useState<unknown>(undefined);
  const [cancelling, setCancelling] = useState(false);
  const validationLoss = useMemo(() => validationPoints(stream.validations), [stream.validations]);

  // The latest reloads, for the stream's effect (which starts once per run).
  const reloads = useRef({ run: run.reload, artifacts: artifacts.reload });
  reloads.current = { run: run.reload, artifacts: artifacts.reload };

  useEffect(() => {
    const controller = new AbortController();
    const reloadRun = trailing(() => void reloads.current.run(), RELOAD_MS);
    const reloadArtifacts = trailing(() => void reloads.current.artifacts(), RELOAD_MS);
    let pending: TrainingRunEvent[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const flush = () => {
      timer = undefined;
      const batch = pending;
      pending = [];
      if (batch.length === 0) return;
      setStream((state) => applyEvents(state, batch));
      if (batch.some((event) => event.type === 'status')) reloadRun.call();
      if (batch.some((event) => FILE_EVENTS.has(event.type))) reloadArtifacts.call();
    };
    setStream(EMPTY);
    setStreamError(undefined);
    void (async () => {
      try {
        for await (const message of followEvents(`/v1/training-runs/${encodeURIComponent(id)}/events`, { apiKey, signal: controller.signal })) {
          pending.push(JSON.parse(message.data) as TrainingRunEvent);
          timer ??= setTimeout(flush, BATCH_MS);
        }
      } catch (error) {
        if (!controller.signal.aborted) setStreamError(error);
      }
      if (controller.signal.aborted) return;
      // The run has ended (or the stream failed): show what it finished as.
      clearTimeout(timer);
      flush();
      void reloads.current.run();
      void reloads.current.artifacts();
    })();
    return () => {
      controller.abort();
      clearTimeout(timer);
      reloadRun.cancel();
      reloadArtifacts.cancel();
    };
  }, [apiKey, id]);

  const data = run.data;
  // A finished run cannot change again; before that, the stream is newer than the last fetch.
  const status = data !== undefined && FINISHED.has(data.status) ? data.status : stream.status ?? data?.status;
  const active = status !== undefined && ACTIVE_STATUSES.has(status);
  // Without the stream, the run is polled instead.
  useInterval(() => void run.reload(), 3000, active && streamError !== undefined);

  if (data === undefined) {
    return (
      <>
        <h1>Training run {id}</h1>
        <ErrorNotice error={run.error} prefix="Could not load the training run" />
        {run.error === undefined ? <p class="muted">Loading…</p> : null}
      </>
    );
  }

  const progress = stream.progress ?? data.progress ?? undefined;
  const lora = artifacts.data?.find((artifact) => artifact.kind === 'lora');
  const prompts = data.params.validation.prompts;
  const requested = requestedQuality(data);
  /** The prompt of a validation image: one image per prompt, or final_images per prompt in the final set (prompt by prompt). */
  const promptOf = (validation: ValidationResult, i: number) =>
    prompts[validation.final && requested.finalImages > 0 ? Math.floor(i / requested.finalImages) : i];

  const save = async (artifact: TrainingRunArtifact) => {
    setActionError(undefined);
    try {
      await download(apiKey, artifact.content_url, `${data.id}-${basename(artifact.name)}`);
    } catch (caught) {
      setActionError(caught);
    }
  };

  const cancel = async () => {
    if (!confirm(`Cancel training run ${data.name ?? data.id}? A running run stops at its next step.`)) return;
    setActionError(undefined);
    setCancelling(true);
    try {
      await unwrap(api.POST('/v1/training-runs/{id}/cancel', { params: { path: { id: data.id } } }));
      await run.reload();
    } catch (caught) {
      setActionError(caught);
    } finally {
      setCancelling(false);
    }
  };

  return (
    <>
      <h1>{data.name ?? data.id}</h1>
      <div class="toolbar">
        <span class={`status status-${status}`} data-status={status}>{status}</span>
        {data.name === null ? null : <code class="muted">{data.id}</code>}
        <span class="spacer" />
        {status === 'succeeded' && lora !== undefined ? (
          <button type="button" onClick={() => void save(lora)}>Download LoRA</button>
        ) : null}
        {status === 'succeeded' && (data.params.method !== 'full' || data.output?.model_id) ? (
          <Link to={`/generate?run=${encodeURIComponent(data.id)}`} class="button secondary">
            {data.params.method === 'full' ? 'Generate with this model' : 'Generate with this LoRA'}
          </Link>
        ) : null}
        {status !== undefined && !FINISHED.has(status) ? (
          <button type="button" class="danger" disabled={cancelling || data.cancel_requested} onClick={() => void cancel()}>
            {data.cancel_requested ? 'Cancelling…' : 'Cancel run'}
          </button>
        ) : null}
      </div>
      <ErrorNotice error={actionError} />
      <ErrorNotice error={run.error} prefix="Could not refresh the training run" />
      {data.error === null ? null : (
        <p class="error">Training failed ({data.error.code}): {data.error.message}</p>
      )}

      <section class="card" aria-labelledby="run-progress-heading">
        <h2 id="run-progress-heading">Progress</h2>
        <Progress
          label="Training progress"
          value={progress === undefined ? (status !== undefined && FINISHED.has(status) ? 0 : undefined) : progress.percent}
          max={100}
          text={progressText(progress, status)}
        />
        {status === 'queued' && data.queue_reason !== null ? <p class="hint">{data.queue_reason}</p> : null}
        <LossChart series={stream.series} validation={validationLoss} validationLabel={validationLossLabel(data)} />
        <ErrorNotice error={streamError} prefix="Live updates stopped" />
      </section>

      <QualityPanel
        sets={stream.validations.flatMap((validation) => (validation.quality === null ? [] : [validation.quality]))}
        fallback={runQuality(data)}
        requested={requested.metrics}
      />

      <section class="card" aria-labelledby="run-facts-heading">
        <h2 id="run-facts-heading">Details</h2>
        <dl class="facts">
          <dt>Dataset</dt>
          <dd><Link to={`/datasets/${data.dataset_id}`}>{dataset.data?.name ?? data.dataset_id}</Link></dd>
          <dt>Model</dt>
          <dd>{data.model}</dd>
          <dt>Method</dt>
          <dd>{data.params.method === 'full' ? 'Full fine-tune' : 'LoRA'}</dd>
          <dt>Devices</dt>
          <dd>{data.params.devices}{data.params.zero_stage > 0 ? ` (ZeRO-${data.params.zero_stage})` : ''}</dd>
          {data.output?.model_id === null || data.output?.model_id === undefined ? null : (
            <>
              <dt>Trained model</dt>
              <dd><code>{data.output.model_id}</code></dd>
            </>
          )}
          <dt>Trigger</dt>
          <dd><code>{data.trigger_token}</code> {data.class_word}</dd>
          <dt>Images</dt>
          <dd>{data.image_count}</dd>
          {maxEpochsOf(data) === null ? (
            <>
              <dt>Steps</dt>
              <dd>{data.params.max_steps}</dd>
            </>
          ) : (
            <>
              <dt>Epochs</dt>
              <dd>{maxEpochsOf(data)}</dd>
            </>
          )}
          {validationSplitOf(data) === 0 ? null : (
            <>
              <dt>Held out</dt>
              <dd>
                {formatNumber(validationSplitOf(data) * 100, 3)}% of the photos
                {heldOutImagesOf(data) === null ? '' : ` (${heldOutImagesOf(data)})`}, for the held-out loss
              </dd>
            </>
          )}
          {data.params.rank === null ? null : (
            <>
              <dt>Rank</dt>
              <dd>{data.params.rank}</dd>
            </>
          )}
          <dt>Learning rate</dt>
          <dd>{data.params.learning_rate}</dd>
          <dt>Resolution</dt>
          <dd>{data.params.resolution} px</dd>
          <dt>Created</dt>
          <dd>{formatTime(data.created_at)}</dd>
          <dt>Started</dt>
          <dd>{formatTime(data.started_at)}</dd>
          <dt>Completed</dt>
          <dd>{formatTime(data.completed_at)}</dd>
          <dt>Attempt</dt>
          <dd>{data.attempt}{data.interruptions > 0 ? ` (${data.interruptions} interrupted)` : ''}</dd>
          {data.metrics?.final_loss === undefined ? null : (
            <>
              <dt>Final loss</dt>
              <dd>{formatNumber(data.metrics.final_loss)}</dd>
            </>
          )}
          {data.metrics?.seconds === undefined ? null : (
            <>
              <dt>Training time</dt>
              <dd>{formatDuration(data.metrics.seconds)}</dd>
            </>
          )}
          {peakMemory(data) === undefined ? null : (
            <>
              <dt>Peak memory</dt>
              <dd>{formatBytes(peakMemory(data)!)}{data.progress?.device ? ` (${data.progress.device})` : ''}</dd>
            </>
          )}
        </dl>
      </section>

      <section aria-labelledby="run-validation-heading">
        <h2 id="run-validation-heading">Validation images</h2>
        {stream.validations.length === 0 ? (
          <p class="muted">
            {data.params.validation.every > 0
              ? `None yet: the run validates every ${data.params.validation.every} steps and at the end.`
              : 'None yet: the run validates at the end.'}
          </p>
        ) : (
          stream.validations.map((validation) => (
            <ValidationSection key={`${validation.step}-${validation.final}`} validation={validation} promptOf={(i) => promptOf(validation, i)} />
          ))
        )}
      </section>

      <RunLog id={data.id} lines={stream.log} dropped={stream.logDropped} />

      <section aria-labelledby="run-files-heading">
        <h2 id="run-files-heading">Files</h2>
        <ErrorNotice error={artifacts.error} prefix="Could not load the files" />
        {artifacts.data === undefined ? null : artifacts.data.length === 0 ? (
          <p class="muted">No files yet: checkpoints, validation images and the LoRA appear here as the run writes them.</p>
        ) : (
          <table class="list">
            <TableHead columns={['File', 'Kind', 'Size', 'Step', 'Download']} />
            <tbody>
              {artifacts.data.map((artifact) => (
                <tr key={artifact.name}>
                  <td data-label="File"><code>{artifact.name}</code></td>
                  <td data-label="Kind">{artifact.kind}</td>
                  <td data-label="Size">{formatBytes(artifact.byte_size)}</td>
                  <td data-label="Step">{artifact.step}</td>
                  <td>
                    <button type="button" class="secondary small" aria-label={`Download file ${artifact.name}`} onClick={() => void save(artifact)}>
                      Download
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}

/** One validation's images (or the final set's), each captioned with its prompt. */
function ValidationSection({ validation, promptOf }: { validation: ValidationResult; promptOf: (i: number) => string | undefined }) {
  const id = `run-validation-${validation.step}${validation.final ? '-final' : ''}`;
  return (
    <section aria-labelledby={id}>
      <h3 id={id}>{validation.final ? `Final set (step ${validation.step})` : `Step ${validation.step}`}</h3>
      {validation.final && validation.loss === null ? null : <p class="muted">Validation loss {formatNumber(validation.loss)}</p>}
      {validation.images.length === 0 ? null : (
        <ul class="gallery">
          {validation.images.map((image, i) => (
            <li key={image.name}>
              <figure>
                <AuthImage
                  path={image.content_url}
                  alt={validation.final ? `Final image ${i + 1}` : `Validation image ${i + 1} at step ${validation.step}`}
                />
                {promptOf(i) === undefined ? null : <figcaption>{promptOf(i)}</figcaption>}
              </figure>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

/** The run's log, kept scrolled to its end unless the reader has scrolled up. */
function RunLog({ id, lines, dropped }: { id: string; lines: string[]; dropped: number }) {
  const { apiKey } = useSession();
  const pre = useRef<HTMLPreElement>(null);
  const atEnd = useRef(true);
  const [error, setError] = useState<unknown>(undefined);
  useLayoutEffect(() => {
    const element = pre.current;
    if (element !== null && atEnd.current) element.scrollTop = element.scrollHeight;
  }, [lines]);
  const onScroll = () => {
    const element = pre.current;
    if (element !== null) atEnd.current = element.scrollHeight - element.scrollTop - element.clientHeight < 24;
  };
  const saveLog = async () => {
    setError(undefined);
    try {
      await download(apiKey, `/v1/training-runs/${encodeURIComponent(id)}/logs`, `${id}.log`);
    } catch (caught) {
      setError(caught);
    }
  };
  return (
    <section aria-labelledby="run-log-heading">
      <h2 id="run-log-heading">Log</h2>
      {dropped > 0 ? <p class="muted">The first {dropped} lines are left out here; the full log downloads below.</p> : null}
      {/* focusable: a keyboard scrolls it; aria-live off: thousands of lines are not read out */}
      <pre class="log" ref={pre} onScroll={onScroll} tabIndex={0} aria-live="off" aria-label="Run log">
        {lines.length === 0 ? 'No log lines yet.' : lines.join('\n')}
      </pre>
      <ErrorNotice error={error} />
      <div class="toolbar">
        <button type="button" class="secondary small" onClick={() => void saveLog()}>Download full log</button>
      </div>
    </section>
  );
}
