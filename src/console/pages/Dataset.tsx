// One dataset: what it is, its photos with their captions (thousands of them: a windowed
// grid), uploads and archive imports, captioning, the way on to training, and the runs
// trained on it compared by their quality metrics.
import { useState } from 'preact/hooks';
import { unwrap, type Dataset } from '../api.js';
import { ArchiveImport } from '../components/ArchiveImport.js';
import { CaptioningPanel } from '../components/CaptioningPanel.js';
import { ErrorNotice } from '../components/ErrorNotice.js';
import { ImageGrid } from '../components/ImageGrid.js';
import { RunComparison } from '../components/RunComparison.js';
import { Uploader } from '../components/Uploader.js';
import { formatTime } from '../format.js';
import { useLoad } from '../hooks.js';
import { Link, navigate } from '../router.js';
import { useSession } from '../session.js';

export function DatasetPage({ id }: { id: string }) {
  const { api } = useSession();
  const dataset = useLoad(() => unwrap(api.GET('/v1/datasets/{id}', { params: { path: { id } } })), [api, id]);
  // Bumped when the photos may have changed: the grid fetches the rows on screen again.
  const [imagesChanged, setImagesChanged] = useState(0);
  const refreshImages = () => setImagesChanged((count) => count + 1);
  const reload = () => {
    refreshImages();
    void dataset.reload();
  };

  if (dataset.data === undefined) {
    return (
      <section>
        <h1>Dataset</h1>
        {dataset.error === undefined ? <p aria-busy="true">Loading…</p> : <ErrorNotice error={dataset.error} />}
        <p><Link to="/">All datasets</Link></p>
      </section>
    );
  }
  return (
    <section>
      <DatasetHeader dataset={dataset.data} />
      <Uploader datasetId={id} onUploaded={reload} />
      <ArchiveImport datasetId={id} onImported={reload} />
      <CaptioningPanel datasetId={id} onProgress={refreshImages} />
      <RunComparison datasetId={id} />
      {/* the count is the dataset's: the grid loads its pages as they are scrolled to */}
      <h2 id="images-heading">Photos ({dataset.data.image_count})</h2>
      {dataset.data.image_count === 0 ? (
        <p>No photos yet. Add 5 to 20 photos of the subject: different places, light and angles work best.</p>
      ) : (
        <ImageGrid datasetId={id} count={dataset.data.image_count} refreshKey={imagesChanged} onChanged={reload} />
      )}
    </section>
  );
}

function DatasetHeader({ dataset }: { dataset: Dataset }) {
  const { api } = useSession();
  const [error, setError] = useState<unknown>(undefined);
  const remove = async () => {
    if (!confirm(`Delete the dataset "${dataset.name}" and its ${dataset.image_count} photos?`)) return;
    try {
      await unwrap(api.DELETE('/v1/datasets/{id}', { params: { path: { id: dataset.id } } }));
      navigate('/');
    } catch (caught) {
      setError(caught);
    }
  };
  return (
    <>
      <p class="muted"><Link to="/">Datasets</Link> /</p>
      <h1>{dataset.name}</h1>
      <dl class="facts">
        <dt>Trigger token</dt>
        <dd><code>{dataset.trigger_token}</code></dd>
        <dt>Class word</dt>
        <dd>{dataset.class_word}</dd>
        <dt>Created</dt>
        <dd>{formatTime(dataset.created_at)}</dd>
      </dl>
      <div class="toolbar">
        <Link class="button" to={`/runs/new?dataset=${dataset.id}`}>Train a LoRA on this dataset</Link>
        <span class="spacer" />
        <button type="button" class="danger" onClick={remove}>Delete dataset</button>
      </div>
      <ErrorNotice error={error} />
    </>
  );
}
