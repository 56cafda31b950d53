// Adding photos to a dataset: drop files (or pick them), each sent as its own request so
// that one refused file (not an image, too small, a duplicate set full) stops only itself;
// each shows its progress, and a refusal shows the problem the API wrote, which names the file.
import { useRef, useState } from 'preact/hooks';
import { errorMessage, uploadWithProgress } from '../api.js';
import { formatBytes } from '../format.js';
import { useSession } from '../session.js';

/** Requests in flight at once: enough to fill the line, few enough to show order. */
const PARALLEL_UPLOADS = 2;
const ACCEPT = 'image/jpeg,image/png,image/webp,.jpg,.jpeg,.png,.webp,.zip,application/zip';

interface Upload {
  id: number;
  file: File;
  loaded: number;
  state: 'waiting' | 'uploading' | 'stored' | 'refused';
  message?: string;
}

export function Uploader({ datasetId, onUploaded }: { datasetId: string; onUploaded: () => void }) {
  const { apiKey } = useSession();
  const [uploads, setUploads] = useState<Upload[]>([]);
  const [over, setOver] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const nextId = useRef(0);

  const update = (id: number, change: Partial<Upload>) =>
    setUploads((list) => list.map((upload) => (upload.id === id ? { ...upload, ...change } : upload)));

  const send = async (upload: Upload) => {
    update(upload.id, { state: 'uploading' });
    try {
      const result = await uploadWithProgress(apiKey, datasetId, upload.file, ({ loaded }) => update(upload.id, { loaded }));
      const created = result.data.filter((image) => !image.duplicate).length;
      const duplicates = result.data.length - created;
      const message =
        result.data.length > 1
          ? `${created} image(s) added${duplicates > 0 ? `, ${duplicates} already in the dataset` : ''}`
          : duplicates > 0 ? 'Already in the dataset' : 'Added';
      update(upload.id, { state: 'stored', loaded: upload.file.size, message });
      onUploaded();
    } catch (error) {
      update(upload.id, { state: 'refused', message: errorMessage(error) });
    }
  };

  const add = (files: FileList | null) => {
    if (files === null || files.length === 0) return;
    const added = [...files].map((file): Upload => ({ id: nextId.current++, file, loaded: 0, state: 'waiting' }));
    setUploads((list) => [...added, ...list]);
    // A small pool: each worker takes the next waiting file.
    const queue = [...added];
    const worker = async () => {
      for (let upload = queue.shift(); upload !== undefined; upload = queue.shift()) await send(upload);
    };
    for (let i = 0; i < Math.min(PARALLEL_UPLOADS, queue.length); i++) void worker();
  };

  const refused = uploads.filter((upload) => upload.state === 'refused').length;
  return (
    <section aria-labelledby="upload-heading">
      <h2 id="upload-heading">Add photos</h2>
      <div
        class={`dropzone${over ? ' over' : ''}`}
        onDragOver={(event) => {
          event.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)}
        onDrop={(event) => {
          event.preventDefault();
          setOver(false);
          add(event.dataTransfer?.files ?? null);
        }}
      >
        <p>Drop JPEG, PNG or WebP photos, or .zip archives of them, here.</p>
        <label for="upload-files" class="button secondary">Choose files…</label>
        <input
          id="upload-files"
          ref={input}
          type="file"
          multiple
          accept={ACCEPT}
          class="visually-hidden"
          onChange={(event) => {
            add(event.currentTarget.files);
            event.currentTarget.value = ''; // the same file can be chosen again
          }}
        />
        <p class="hint">Each file is checked as it arrives: a file that is not an image is refused alone, with the reason.</p>
      </div>
      {uploads.length === 0 ? null : (
        <>
          <p class="hint" aria-live="polite">
            {uploads.filter((upload) => upload.state === 'stored').length} of {uploads.length} uploaded
            {refused > 0 ? `, ${refused} refused` : ''}
          </p>
          <ul class="uploads" aria-label="Uploads">
            {uploads.map((upload) => (
              <li key={upload.id} data-state={upload.state}>
                <span class="name" title={upload.file.name}>{upload.file.name} <span class="muted">({formatBytes(upload.file.size)})</span></span>
                <progress
                  aria-label={`Upload of ${upload.file.name}`}
                  value={upload.state === 'waiting' ? 0 : upload.loaded}
                  max={Math.max(1, upload.file.size)}
                />
                {upload.state === 'refused' ? (
                  <p class="refusal" role="alert">
                    {upload.message?.includes(upload.file.name) ? upload.message : `${upload.file.name}: ${upload.message ?? ''}`}
                  </p>
                ) : upload.state === 'stored' ? (
                  <p class="ok upload-done">{upload.message}</p>
                ) : null}
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}
