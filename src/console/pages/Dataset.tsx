// One dataset: what it is, its photos with their captions, uploads, captioning, the way on
// to training, and the runs trained on it compared by their quality metrics.
import { useState } from 'preact/hooks';
import { unwrap, type Dataset, type Image } from '../api.js';
import { CaptioningPanel } from '../components/CaptioningPanel.js';
import { ErrorNotice } from '../components/ErrorNotice.js';
import { ImageCard } from '../components/ImageCard.js';
import { RunComparison } from '../components/RunComparison.js';
import { Uploader } from '../components/Uploader.js';
import { formatTime } from '../format.js';
import { useLoad } from '../hooks.js';
import { Link, navigate } from '../router.js';
import { useSession } from '../session.js';

/** A dataset holds at most a few dozen photos: one page of the largest size shows them all. */
const IMAGE_PAGE = 100;

export function DatasetPage({ id }: { id: string }) {
  const { api } = useSession();
  const dataset = useLoad(() => unwrap(api.GET('/v1/datasets/{id}', { params: { path: { id } } })), [api, id]);
  const images = useLoad(
    () => unwrap(api.GET('/v1/datasets/{id}/images', { params: { path: { id }, query: { limit: IMAGE_PAGE } } })),
    [api, id],
  );
  const reload = () => {
    void images.reload();
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
      <CaptioningPanel datasetId={id} onProgress={() => void images.reload()} />
      <h2 id="images-heading">Photos ({dataset.data.image_count})</h2>
      <ErrorNotice error={images.error} />
      {images.data === undefined ? null : images.data.data.length === 0 ? (
        <p>No photos yet. Add 5 to 20 photos of the subject: different places, light and angles work best.</p>
      ) : (
        <ImageGrid images={images.data.data} onChanged={reload} />
      )}
      <RunComparison datasetId={id} />
    </section>
  );
}

function ImageGrid({ images, onChanged }: { images: Image[]; onChanged: () => void }) {
  return (
    <ul class="image-grid" aria-labelledby="images-heading">
      {/* keyed by id and caption: a caption written by a job replaces the draft shown */}
      {images.map((image) => <ImageCard key={`${image.id}:${image.caption ?? ''}`} image={image} onChanged={onChanged} />)}
    </ul>
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
