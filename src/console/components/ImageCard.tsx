// One photo of a dataset: its thumbnail, its caption edited in place (saved as a manual
// caption, the earlier one kept in the history), the history on demand, and delete.
import { useState } from 'preact/hooks';
import { unwrap, type Image, type Schemas } from '../api.js';
import { formatTime } from '../format.js';
import { useSession } from '../session.js';
import { AuthImage } from './AuthImage.js';
import { ErrorNotice } from './ErrorNotice.js';

type Caption = Schemas['Caption'];

export interface ImageCardProps {
  image: Image;
  onChanged: () => void;
  /** Its place in a windowed grid (only some cards are in the page): told to screen readers. */
  position?: { index: number; count: number };
}

export function ImageCard({ image, onChanged, position }: ImageCardProps) {
  const { api } = useSession();
  const [draft, setDraft] = useState(image.caption ?? '');
  const [saved, setSaved] = useState(image.caption ?? '');
  const [source, setSource] = useState(image.caption_source);
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);
  const [history, setHistory] = useState<Caption[] | undefined>(undefined);
  const label = image.original_filename ?? image.id;
  const captionId = `caption-${image.id}`;

  const save = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const result = await unwrap(api.PUT('/v1/images/{id}/caption', { params: { path: { id: image.id } }, body: { caption: draft } }));
      setSaved(result.current?.caption ?? draft);
      setSource(result.current?.source ?? 'manual');
      setDraft(result.current?.caption ?? draft);
      if (history !== undefined) await loadHistory();
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  };

  const loadHistory = async () => {
    try {
      const page = await unwrap(api.GET('/v1/images/{id}/caption/history', { params: { path: { id: image.id }, query: { limit: 20 } } }));
      setHistory(page.data);
    } catch (caught) {
      setError(caught);
    }
  };

  const remove = async () => {
    if (!confirm(`Delete ${label} from the dataset?`)) return;
    try {
      await unwrap(api.DELETE('/v1/images/{id}', { params: { path: { id: image.id } } }));
      onChanged();
    } catch (caught) {
      setError(caught);
    }
  };

  return (
    <li class="image-card" aria-setsize={position?.count} aria-posinset={position === undefined ? undefined : position.index + 1}>
      <AuthImage path={`${image.content_url}?variant=thumbnail`} alt={label} class="thumb" />
      <form onSubmit={save}>
        <label for={captionId}>Caption of {label}</label>
        <textarea id={captionId} value={draft} onInput={(event) => setDraft(event.currentTarget.value)} rows={3} />
        <div class="row">
          <button type="submit" class="small" disabled={busy || draft.trim() === '' || draft === saved} aria-label={`Save caption of ${label}`}>
            {busy ? 'Saving…' : 'Save caption'}
          </button>
          <button
            type="button"
            class="small secondary"
            aria-expanded={history !== undefined}
            aria-controls={`history-${image.id}`}
            aria-label={`Caption history of ${label}`}
            onClick={() => (history === undefined ? void loadHistory() : setHistory(undefined))}
          >
            History
          </button>
          <button type="button" class="small danger" onClick={remove} aria-label={`Delete ${label}`}>Delete</button>
        </div>
      </form>
      <p class="hint">
        {image.width}×{image.height}
        {source === null ? '' : ` · caption by ${source}`}
      </p>
      <ErrorNotice error={error} />
      {history === undefined ? null : (
        <ol class="history" id={`history-${image.id}`} aria-label={`Earlier captions of ${label}`}>
          {history.length === 0 ? <li>No caption yet.</li> : null}
          {history.map((version) => (
            <li key={version.id}>
              {version.caption} <span class="muted">({version.source}{version.current ? ', current' : ''}, {formatTime(version.created_at)})</span>
            </li>
          ))}
        </ol>
      )}
    </li>
  );
}
