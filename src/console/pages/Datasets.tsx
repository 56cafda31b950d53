// Home: the tenant's datasets, and a form that creates one.
import { useState } from 'preact/hooks';
import { ApiError, unwrap, type Dataset } from '../api.js';
import { ErrorNotice } from '../components/ErrorNotice.js';
import { TableHead } from '../components/TableHead.js';
import { formatTime } from '../format.js';
import { useLoad } from '../hooks.js';
import { Link, navigate } from '../router.js';
import { useSession } from '../session.js';

export function DatasetsPage() {
  const { api } = useSession();
  const datasets = useLoad(() => unwrap(api.GET('/v1/datasets', { params: { query: { limit: 100 } } })), [api]);
  return (
    <section>
      <h1>Datasets</h1>
      <p class="hint">A dataset is one subject (a person, a pet, a style): 5 to 20 photos of it, captioned, to train a LoRA on.</p>
      <CreateDataset />
      <h2>Your datasets</h2>
      <ErrorNotice error={datasets.error} />
      {datasets.data === undefined ? (
        datasets.loading ? <p aria-busy="true">Loading…</p> : null
      ) : datasets.data.data.length === 0 ? (
        <p>No datasets yet: create one above.</p>
      ) : (
        <DatasetTable datasets={datasets.data.data} />
      )}
    </section>
  );
}

function DatasetTable({ datasets }: { datasets: Dataset[] }) {
  return (
    <table class="list">
      <TableHead columns={['Name', 'Trigger and class', 'Images', 'Created']} />
      <tbody>
        {datasets.map((dataset) => (
          <tr key={dataset.id}>
            <td data-label="Name"><Link to={`/datasets/${dataset.id}`}>{dataset.name}</Link></td>
            <td data-label="Trigger and class"><code>{dataset.trigger_token}</code> {dataset.class_word}</td>
            <td data-label="Images">{dataset.image_count}</td>
            <td data-label="Created">{formatTime(dataset.created_at)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

const FIELDS = [
  { name: 'name', label: 'Name', hint: 'e.g. Rex the dog', required: true },
  { name: 'trigger_token', label: 'Trigger token', hint: 'A rare word the LoRA learns for the subject; blank: ohwx', required: false },
  { name: 'class_word', label: 'Class word', hint: 'What the subject is: person, man, woman, dog, cat, style…', required: true },
] as const;

function CreateDataset() {
  const { api } = useSession();
  const [values, setValues] = useState<Record<string, string>>({ name: '', trigger_token: '', class_word: '' });
  const [error, setError] = useState<unknown>(undefined);
  const [busy, setBusy] = useState(false);

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const body = {
        name: values.name!.trim(),
        class_word: values.class_word!.trim(),
        ...(values.trigger_token!.trim() === '' ? {} : { trigger_token: values.trigger_token!.trim() }),
      };
      const dataset = await unwrap(api.POST('/v1/datasets', { body }));
      navigate(`/datasets/${dataset.id}`);
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  };

  return (
    <form class="card" onSubmit={submit} aria-labelledby="create-dataset">
      <h2 id="create-dataset">New dataset</h2>
      <ErrorNotice error={error} />
      <div class="form-grid">
        {FIELDS.map((field) => {
          const message = error instanceof ApiError ? error.fieldMessage(field.name) : undefined;
          return (
            <div class="field" key={field.name}>
              <label for={`dataset-${field.name}`}>{field.label}</label>
              <input
                id={`dataset-${field.name}`}
                name={field.name}
                value={values[field.name]}
                required={field.required}
                aria-describedby={`dataset-${field.name}-hint`}
                aria-invalid={message === undefined ? undefined : 'true'}
                onInput={(event) => setValues({ ...values, [field.name]: event.currentTarget.value })}
              />
              <p class="hint" id={`dataset-${field.name}-hint`}>{field.hint}</p>
              {message === undefined ? null : <p class="field-error">{message}</p>}
            </div>
          );
        })}
      </div>
      <button type="submit" disabled={busy}>{busy ? 'Creating…' : 'Create dataset'}</button>
    </form>
  );
}
