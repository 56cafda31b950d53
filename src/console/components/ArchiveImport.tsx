// "Import archive": a .zip, .tar or .tar.gz of photos (and their captions: sidecar .txt
// files, metadata.jsonl) sent as one raw body to POST /v1/datasets/{id}/imports, with the
// upload's progress, then the import followed through its event stream (progress, then
// its end) with what it stored and refused; and the dataset's past imports (the routes of
// the dataset-imports tag; dataset-imports.ts reads what they answer).
import { useEffect, useRef, useState } from 'preact/hooks';
import { followEvents } from '../../../openapi/client/index.js';
import { ApiError, fetchJson, uploadArchive, type UploadProgress } from '../api.js';
import {
  ARCHIVE_ACCEPT,
  datasetImportOf,
  datasetImportsOf,
  importEventOf,
  importFraction,
  importProgressText,
  isFinished,
  type DatasetImport,
} from '../dataset-imports.js';
import { formatBytes, formatTime } from '../format.js';
import { useInterval, useLoad } from '../hooks.js';
import { useSession } from '../session.js';
import { ErrorNotice } from './ErrorNotice.js';
import { Progress } from './Progress.js';
import { TableHead } from './TableHead.js';

/** Past imports listed (newest first). */
const LIST_LIMIT = 10;
/** While an import stores images, the grid is refreshed at most this often (and once at its end). */
const GRID_REFRESH_MS = 3000;
/** Without the event stream, the import is polled this often. */
const POLL_MS = 2000;

export function ArchiveImport({ datasetId, onImported }: { datasetId: string; onImported: () => void }) {
  const { apiKey } = useSession();
  const past = useLoad(
    async () => datasetImportsOf(await fetchJson(apiKey, `/v1/datasets/${encodeURIComponent(datasetId)}/imports?limit=${LIST_LIMIT}`)),
    [apiKey, datasetId],
  );
  const [upload, setUpload] = useState<{ file: File; progress: UploadProgress } | null>(null);
  const [uploadError, setUploadError] = useState<unknown>(undefined);
  /** The import followed live (the one just uploaded, or one still running when the page opened). */
  const [followed, setFollowed] = useState<DatasetImport | null>(null);
  /** The import whose report is shown: the followed one, or one picked from the list. */
  const [shownId, setShownId] = useState<string | null>(null);
  const [streamError, setStreamError] = useState<unknown>(undefined);
  const latestOnImported = useRef(onImported);
  latestOnImported.current = onImported;
  const followedId = followed?.id ?? null;

  // An import still running when the page opens is followed too.
  const newest = past.data?.data[0];
  useEffect(() => {
    if (followed === null && newest !== undefined && !isFinished(newest)) {
      setFollowed(newest);
      setShownId(newest.id);
    }
  }, [newest?.id]);

  useEffect(() => {
    if (followedId === null) return;
    const controller = new AbortController();
    let lastRefresh = Date.now();
    let stored = -1;
    setStreamError(undefined);
    void (async () => {
      try {
        const url = `/v1/dataset-imports/${encodeURIComponent(followedId)}/events`;
        for await (const message of followEvents(url, { apiKey, signal: controller.signal })) {
          const event = importEventOf(message);
          if (event === null) continue;
          setFollowed(event.import);
          if (event.type !== 'progress') break; // the stream's last event: the import has ended
          // Photos arrive while it runs: the grid shows them every few seconds.
          if (event.import.progress.images_stored !== stored && Date.now() - lastRefresh > GRID_REFRESH_MS) {
            stored = event.import.progress.images_stored;
            lastRefresh = Date.now();
            latestOnImported.current();
          }
        }
      } catch (error) {
        if (!controller.signal.aborted) setStreamError(error);
        return;
      }
      if (controller.signal.aborted) return;
      latestOnImported.current();
      void past.reload();
    })();
    return () => controller.abort();
  }, [apiKey, followedId]);

  // The stream refused or dropped for good: the import is polled until it ends.
  const polling = followed !== null && !isFinished(followed) && streamError !== undefined;
  useInterval(
    () => {
      if (followed === null) return;
      void fetchJson(apiKey, `/v1/dataset-imports/${encodeURIComponent(followed.id)}`).then((body) => {
        const entry = datasetImportOf(body);
        if (entry === null) return;
        setFollowed(entry);
        if (isFinished(entry)) {
          latestOnImported.current();
          void past.reload();
        }
      }, () => undefined);
    },
    POLL_MS,
    polling,
  );

  const start = async (file: File) => {
    setUploadError(undefined);
    setUpload({ file, progress: { loaded: 0, total: file.size } });
    try {
      const created = await uploadArchive(apiKey, datasetId, file, (progress) => setUpload({ file, progress }));
      setFollowed(created);
      setShownId(created.id);
      void past.reload();
    } catch (caught) {
      setUploadError(caught);
    } finally {
      setUpload(null);
    }
  };

  // A service before issue 26 has no imports (the dataset itself is there): nothing to offer.
  if (past.error instanceof ApiError && past.error.status === 404) return null;
  const listed = past.data?.data ?? [];
  const shown = followed !== null && followed.id === shownId ? followed : listed.find((entry) => entry.id === shownId) ?? null;
  return (
    <section aria-labelledby="import-heading">
      <h2 id="import-heading">Import an archive</h2>
      <p class="hint">
        A .zip, .tar or .tar.gz of photos, with their captions as <code>name.txt</code> beside <code>name.jpg</code> or
        in a <code>metadata.jsonl</code>. It is uploaded whole, then unpacked here: entries that are not usable photos are
        listed with the reason, and photos already in the dataset are skipped.
      </p>
      <div class="toolbar">
        <label for="import-archive" class={`button secondary${upload === null ? '' : ' disabled'}`}>Import archive…</label>
        <input
          id="import-archive"
          type="file"
          accept={ARCHIVE_ACCEPT}
          class="visually-hidden"
          disabled={upload !== null}
          onChange={(event) => {
            const file = event.currentTarget.files?.[0];
            event.currentTarget.value = ''; // the same archive can be chosen again
            if (file !== undefined) void start(file);
          }}
        />
      </div>
      {upload === null ? null : (
        <Progress
          label={`Upload of ${upload.file.name}`}
          value={upload.progress.loaded}
          max={Math.max(1, upload.progress.total)}
          text={`${formatBytes(upload.progress.loaded)} of ${formatBytes(upload.progress.total)} sent`}
        />
      )}
      <ErrorNotice error={uploadError} prefix="The archive was not imported" />
      {shown === null ? null : <ImportReport entry={shown} live={shown.id === followedId && !isFinished(shown)} />}
      <ErrorNotice error={polling ? undefined : streamError} prefix="Live updates of the import stopped" />
      <ErrorNotice error={past.error} prefix="Could not load the past imports" />
      {listed.length === 0 ? null : (
        <table class="list imports">
          <caption class="visually-hidden">Past imports</caption>
          <TableHead columns={['Archive', 'Status', 'Stored', 'Duplicates', 'Refused', 'Started', 'Report']} />
          <tbody>
            {listed.map((entry) => {
              const current = entry.id === followed?.id ? followed : entry;
              const name = current.filename ?? current.id;
              return (
                <tr key={entry.id}>
                  <td data-label="Archive">{name} <span class="muted">({formatBytes(current.bytes)})</span></td>
                  <td data-label="Status"><span class={`status status-${current.status}`}>{current.status}</span></td>
                  <td data-label="Stored">{current.progress.images_stored}</td>
                  <td data-label="Duplicates">{current.progress.duplicates}</td>
                  <td data-label="Refused">{current.progress.refused}</td>
                  <td data-label="Started">{formatTime(current.created_at)}</td>
                  <td>
                    <button
                      type="button"
                      class="secondary small"
                      aria-label={`Report of the import of ${name}`}
                      aria-pressed={shownId === entry.id}
                      onClick={() => setShownId(shownId === entry.id ? null : entry.id)}
                    >
                      Report
                    </button>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** One import: its progress while it runs; at its end what it stored, the refusals and the caption conflicts. */
function ImportReport({ entry, live }: { entry: DatasetImport; live: boolean }) {
  const name = entry.filename ?? entry.id;
  return (
    <div class="card import-report" aria-label={`Import of ${name}`} role="region">
      <p>
        <span class={`status status-${entry.status}`} data-status={entry.status}>{entry.status}</span> {name}
        {entry.format === null ? null : <span class="muted"> ({entry.format}, {formatBytes(entry.bytes)})</span>}
      </p>
      <Progress
        label={`Import of ${name}`}
        value={entry.status === 'queued' ? undefined : importFraction(entry) * 100}
        max={100}
        text={importProgressText(entry)}
      />
      {/* polite: counts read out as they settle, not every progress event */}
      <p class="visually-hidden" aria-live="polite">{live ? '' : `Import ${entry.status}: ${importProgressText(entry)}`}</p>
      {entry.error === null ? null : <p class="error">The import failed ({entry.error.code}): {entry.error.message}</p>}
      {entry.caption_conflicts === 0 ? null : (
        <p class="hint">
          {entry.caption_conflicts} {entry.caption_conflicts === 1 ? 'photo has' : 'photos have'} both a sidecar caption and one in
          metadata.jsonl: the sidecar's was kept.
        </p>
      )}
      {entry.refusals.length === 0 ? null : (
        <div class="table-scroll">
          <table class="list refusals">
            <caption>
              Refused entries{entry.refusals_truncated ? ` (the first ${entry.refusals.length} of ${entry.progress.refused})` : ''}
            </caption>
            <TableHead columns={['Entry', 'Reason', 'Detail']} />
            <tbody>
              {entry.refusals.map((refusal, i) => (
                <tr key={`${i}:${refusal.entry}`}>
                  <td data-label="Entry"><code>{refusal.entry}</code></td>
                  <td data-label="Reason"><code>{refusal.code}</code></td>
                  <td data-label="Detail">{refusal.detail}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
