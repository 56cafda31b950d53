// A new training run: a dataset, a base model, what to train (a LoRA, or a full fine-tune),
// a preset, and the run's params, every one of them drawn from the API's own schema
// (openapi:training-params), so a param added to the API shows up here under "Advanced
// settings" without a change to this page. The form follows the model and the method
// chosen: a param of another model family (x-model-families) or of the other method
// (x-training-methods) is not shown or sent, defaults follow the method
// (x-method-defaults), and the model bounds the resolution and clip skip. The model picker
// lists your own models (full fine-tunes) after the server's.
import { useEffect, useRef, useState } from 'preact/hooks';
import paramsSchema, { type ParamSchema } from 'openapi:training-params';
import { ApiError, fetchJson, newIdempotencyKey, unwrap, type ApiClient, type BaseModel, type Dataset } from '../api.js';
import { ErrorNotice } from '../components/ErrorNotice.js';
import { MetricChoices } from '../components/MetricChoices.js';
import { RadioChoices } from '../components/RadioChoices.js';
import { ParamField } from '../components/ParamField.js';
import { useLoad } from '../hooks.js';
import { appliesTo, defaultFor, modelLabel } from '../model-family.js';
import { toFieldValue, type FieldValue } from '../param-values.js';
import { metricInfosOf, QUALITY_METRICS, type QualityMetricInfo } from '../quality-metrics.js';
import { Link, navigate } from '../router.js';
import { fieldsForLength, LENGTH_PARAMS, nonNullSchema, paramsOf, type FieldSpec, type RunLength, type Values } from '../run-params.js';
import { useSession } from '../session.js';
import { presetById, presetsFor, subjectPrompt, type PresetId, type Subject, type TrainingMethod, type TrainingParamsInput } from '../training-presets.js';

/** The param the method choice sets: not a field of its own. */
const METHOD_PARAM = 'method';

/** The params' fields in the schema's order; an object param's fields follow it. */
function fieldsOf(schema: typeof paramsSchema): FieldSpec[] {
  const fields: FieldSpec[] = [];
  for (const [name, param] of Object.entries(schema.properties)) {
    if (name === METHOD_PARAM) continue;
    const nullableObject = param.anyOf?.some((member) => member.type === 'null') ? param.anyOf.find((member) => member.properties !== undefined) : undefined;
    if (param.properties !== undefined) {
      for (const [sub, field] of Object.entries(param.properties)) fields.push({ key: `${name}.${sub}`, path: [name, sub], schema: field, group: name });
    } else if (nullableObject?.properties !== undefined) {
      fields.push({ key: name, path: [name], schema: { type: 'boolean', default: false, description: param.description }, toggle: true, group: name });
      for (const [sub, field] of Object.entries(nullableObject.properties)) {
        fields.push({ key: `${name}.${sub}`, path: [name, sub], schema: field, under: name, group: name });
      }
    } else {
      fields.push({ key: name, path: [name], schema: nonNullSchema(param) });
    }
  }
  return fields;
}

/**
 * validation.metrics and validation.final_images (issue 25) as the API's contract gives
 * them, for as long as openapi/openapi.json lacks them; the document's own take their place
 * once it has them. At their defaults (none, 0) they are not sent, so a service without
 * them is not asked for them.
 */
const QUALITY_FIELDS: FieldSpec[] = [
  {
    key: 'validation.metrics',
    path: ['validation', 'metrics'],
    group: 'validation',
    schema: { type: 'array', items: { type: 'string', enum: QUALITY_METRICS }, default: [], description: 'Quality metrics to score validation images with' },
  },
  {
    key: 'validation.final_images',
    path: ['validation', 'final_images'],
    group: 'validation',
    schema: { type: 'integer', minimum: 0, maximum: 64, default: 0, description: 'Images per validation prompt made with the final weights at the end, scored with every metric chosen' },
  },
];

const FIELDS = [
  ...fieldsOf(paramsSchema),
  ...QUALITY_FIELDS.filter((field) => paramsSchema.properties.validation?.properties?.[field.path[1]!] === undefined),
];
const FIELD_BY_KEY = new Map(FIELDS.map((field) => [field.key, field]));
/** Shown outside "Advanced settings", in this order. */
const TRAINING_KEYS = ['max_steps', 'max_epochs', 'rank', 'learning_rate', 'resolution', 'min_resolution'];
const VALIDATION_KEYS = ['validation.prompts', 'validation.every', 'validation_split', 'validation.metrics', 'validation.final_images'];
const MAIN_KEYS = new Set([...TRAINING_KEYS, ...VALIDATION_KEYS]);

/** Labels of the params this console knows; a param it does not know is named from its key. */
const LABELS: Record<string, string> = {
  max_steps: 'Steps',
  max_epochs: 'Epochs',
  validation_split: 'Held-out share',
  rank: 'Rank',
  alpha: 'Alpha',
  learning_rate: 'Learning rate',
  resolution: 'Resolution',
  min_resolution: 'Smallest resolution',
  text_encoder_lr: 'Text-encoder learning rate',
  text_encoder_2_lr: 'Second text-encoder learning rate',
  clip_skip: 'Clip skip',
  train_text_encoder: 'Train the text encoders',
  optimizer: 'Optimizer',
  mixed_precision: 'Mixed precision',
  gradient_checkpointing: 'Gradient checkpointing',
  batch_size: 'Batch size',
  gradient_accumulation: 'Gradient accumulation',
  devices: 'Devices (GPUs)',
  zero_stage: 'ZeRO stage',
  lr_scheduler: 'Learning-rate schedule',
  warmup_steps: 'Warm-up steps',
  min_snr_gamma: 'Min-SNR gamma',
  noise_offset: 'Noise offset',
  caption_dropout: 'Caption dropout',
  random_flip: 'Random flip',
  repeats: 'Repeats',
  seed: 'Seed',
  checkpoint_every: 'Checkpoint every (steps)',
  validation: 'More validation settings',
  'validation.prompts': 'Validation prompts',
  'validation.every': 'Validate every (steps)',
  'validation.steps': 'Validation sampling steps',
  'validation.guidance_scale': 'Validation guidance scale',
  'validation.seed': 'Validation seed',
  'validation.metrics': 'Quality metrics',
  'validation.final_images': 'Final images per prompt',
  prior_preservation: 'Prior preservation',
  'prior_preservation:toggle': 'Use prior preservation',
  'prior_preservation.class_prompt': 'Class prompt',
  'prior_preservation.num_class_images': 'Class images',
  'prior_preservation.loss_weight': 'Prior loss weight',
  full_bf16: 'Full bf16 (no float32 master weights)',
  ema_decay: 'EMA decay',
  ema_start_step: 'EMA start step',
  ema_on_cpu: 'Keep the EMA in host memory',
  validation_weights: 'Validate with',
  keep_checkpoints: 'Checkpoints kept',
  save_dtype: 'File precision',
  save_peft: 'Also save the peft/diffusers layout',
};

/** The methods, as the form offers them. */
const METHODS: ReadonlyArray<{ id: TrainingMethod; label: string; description: string }> = [
  {
    id: 'lora',
    label: 'LoRA',
    description: 'A small adapter (megabytes) beside the base model: fast, light on memory, and used with any generation of that model.',
  },
  {
    id: 'full',
    label: 'Full fine-tune',
    description: 'DreamBooth: every weight of the UNet (and of the text encoders, if you choose) is trained, with prior preservation. ' +
      'The run registers a model of your own (gigabytes, counted against your model storage), listed with the base models.',
  },
];

function labelOf(key: string): string {
  const known = LABELS[key];
  if (known !== undefined) return known;
  const words = (key.split('.').pop() ?? key).replace(/_/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** The checkbox that turns a nullable object param on; its fieldset's legend is the param's label. */
function toggleLabelOf(key: string): string {
  return LABELS[`${key}:toggle`] ?? `Use ${labelOf(key).toLowerCase()}`;
}

/** The run's two lengths, as the form offers them. */
const LENGTHS: ReadonlyArray<{ id: RunLength; label: string; description: string }> = [
  { id: 'steps', label: 'A number of steps', description: 'Optimizer steps, whatever the size of the dataset: what the presets give.' },
  {
    id: 'epochs',
    label: 'A number of epochs',
    description: 'Passes over every training photo: a run as long as the dataset is large (the photos held out for validation do not count).',
  },
];

const idOf = (key: string) => `run-${key.replace(/\./g, '-')}`;

/** A field's default on a run of `method`: a toggle is on when its object param is on by default (prior preservation of full runs). */
function fieldDefault(field: FieldSpec, method: TrainingMethod): unknown {
  if (field.toggle) {
    const value = defaultFor(paramsSchema.properties[field.path[0]], method);
    return value !== null && value !== undefined;
  }
  return field.path.length === 1 ? defaultFor(field.schema, method) : field.schema.default;
}

/** Every control at its default for the method; the validation prompt names the dataset's subject. */
function defaultValues(subject: Subject, method: TrainingMethod): Values {
  const values: Values = {};
  for (const field of FIELDS) values[field.key] = toFieldValue(field.schema, fieldDefault(field, method));
  if (FIELD_BY_KEY.has('validation.prompts')) values['validation.prompts'] = subjectPrompt(subject);
  return values;
}

/** A preset's params as control values, by key ("validation.every"). */
function presetValues(id: PresetId, subject: Subject): Values {
  const preset = presetById(id);
  const values: Values = {};
  for (const [name, value] of Object.entries(preset.params)) {
    const entries: Array<[string, unknown]> =
      typeof value === 'object' && value !== null && !Array.isArray(value)
        ? Object.entries(value).map(([sub, subValue]) => [`${name}.${sub}`, subValue])
        : [[name, value]];
    for (const [key, entry] of entries) {
      const field = FIELD_BY_KEY.get(key);
      if (field !== undefined) values[key] = toFieldValue(field.schema, entry);
    }
  }
  if (preset.prompts !== undefined) values['validation.prompts'] = preset.prompts(subject).join('\n');
  return values;
}

/** The fields of a model's family and a method: the params of another family or method are neither shown nor sent. */
function fieldsFor(family: BaseModel['family'], method: TrainingMethod): FieldSpec[] {
  return FIELDS.filter((field) => appliesTo(paramsSchema.properties[field.path[0]], family, method));
}

/** A server's message about the field at `path` (e.g. "params.max_steps") or inside it ("params.validation.prompts.0"). */
function messageFor(error: unknown, path: string): string | undefined {
  if (!(error instanceof ApiError)) return undefined;
  return error.fieldMessage(path) ?? error.problem?.errors?.find((field) => field.field.startsWith(`${path}.`) || field.field.startsWith(`${path}[`))?.message;
}

async function allDatasets(api: ApiClient): Promise<Dataset[]> {
  const datasets: Dataset[] = [];
  let cursor: string | undefined;
  // Ten pages of 100: more datasets than a select is any use for.
  for (let page = 0; page < 10; page++) {
    const body = await unwrap(api.GET('/v1/datasets', { params: { query: { limit: 100, ...(cursor === undefined ? {} : { cursor }) } } }));
    datasets.push(...body.data);
    if (body.next_cursor === null) break;
    cursor = body.next_cursor;
  }
  return datasets;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The quality metrics the service offers; null when it offers none (a service before issue 25 answers 404). */
async function qualityMetrics(apiKey: string): Promise<QualityMetricInfo[] | null> {
  try {
    return metricInfosOf(await fetchJson(apiKey, '/v1/quality-metrics'));
  } catch {
    return null;
  }
}

export function NewRunPage({ datasetId }: { datasetId: string | undefined }) {
  const { api, apiKey } = useSession();
  const choices = useLoad(async () => {
    const [datasets, models, metrics] = await Promise.all([
      allDatasets(api),
      unwrap(api.GET('/v1/models')).then((body) => body.data),
      qualityMetrics(apiKey),
    ]);
    return { datasets, models, metrics };
  }, [api, apiKey]);
  const data = choices.data;
  return (
    <>
      <h1>New training run</h1>
      <ErrorNotice error={choices.error} prefix="Could not load datasets and models" />
      {data === undefined ? (
        choices.error === undefined ? <p class="muted">Loading…</p> : null
      ) : data.datasets.length === 0 ? (
        <p>There is no dataset to train on yet. <Link to="/">Create a dataset</Link> and upload a few photos first.</p>
      ) : data.models.length === 0 ? (
        <p>The service has no base model. Put one under MODELS_DIR and restart it.</p>
      ) : (
        <NewRunForm datasets={data.datasets} models={data.models} metrics={data.metrics} initialDatasetId={datasetId} />
      )}
    </>
  );
}

interface FormProps {
  datasets: Dataset[];
  models: BaseModel[];
  /** GET /v1/quality-metrics; null: the service offers none, and the form asks for none. */
  metrics: QualityMetricInfo[] | null;
  initialDatasetId: string | undefined;
}

function NewRunForm({ datasets, models, metrics, initialDatasetId }: FormProps) {
  const { api } = useSession();
  const [datasetId, setDatasetId] = useState(() => (datasets.find((dataset) => dataset.id === initialDatasetId) ?? datasets[0]!).id);
  const [modelId, setModelId] = useState(models[0]!.id);
  const [name, setName] = useState('');
  const [method, setMethod] = useState<TrainingMethod>('lora');
  const [length, setLength] = useState<RunLength>('steps');
  // The demo model starts on the quick test: it makes noise, so a long run teaches nothing.
  const [presetId, setPresetId] = useState<PresetId>(models[0]!.demo ? 'quick' : 'likeness');
  const dataset = datasets.find((candidate) => candidate.id === datasetId) ?? datasets[0]!;
  const model = models.find((candidate) => candidate.id === modelId) ?? models[0]!;
  const [values, setValues] = useState<Values>(() => ({ ...defaultValues(dataset, 'lora'), ...presetValues(presetId, dataset) }));
  const [presetKeys, setPresetKeys] = useState<ReadonlySet<string>>(() => new Set(Object.keys(presetValues(presetId, dataset))));
  // Which preset wrote the validation prompts (they follow the dataset), or null once edited by hand.
  const [promptsFrom, setPromptsFrom] = useState<PresetId | null>(presetId);
  // One key per form: a double submit, or a retry after a lost answer, makes one run.
  const [idempotencyKey] = useState(newIdempotencyKey);
  const [error, setError] = useState<unknown>(undefined);
  // Fields edited since the error: their message no longer applies.
  const [edited, setEdited] = useState<ReadonlySet<string>>(new Set());
  const [busy, setBusy] = useState(false);
  const sending = useRef(false);
  const form = useRef<HTMLFormElement>(null);
  const notice = useRef<HTMLDivElement>(null);

  const fieldError = (path: string, key = path) => (edited.has(key) ? undefined : messageFor(error, path));
  const paramError = (key: string) => fieldError(`params.${key}`, key);

  const markEdited = (key: string) => setEdited((current) => (current.has(key) ? current : new Set(current).add(key)));

  const choosePreset = (id: PresetId, forMethod = method) => {
    setPresetId(id);
    if (id === 'custom') return; // keeps every value as it is
    setLength('steps'); // the presets are in steps
    const preset = presetValues(id, dataset);
    setValues({ ...defaultValues(dataset, forMethod), ...preset });
    setPresetKeys(new Set(Object.keys(preset)));
    setPromptsFrom(id);
  };

  // Another method: its defaults, and its first preset (the quick test on a demo model).
  const chooseMethod = (next: TrainingMethod) => {
    setMethod(next);
    markEdited('params.method');
    const presets = presetsFor(next).filter((preset) => preset.id !== 'custom');
    const first = (model.demo ? presets[0] : presets[1] ?? presets[0]) ?? presetById('custom');
    choosePreset(first.id, next);
  };

  const chooseDataset = (id: string) => {
    setDatasetId(id);
    markEdited('dataset_id');
    const next = datasets.find((candidate) => candidate.id === id);
    if (next === undefined || promptsFrom === null) return;
    const prompts = presetById(promptsFrom).prompts ?? ((subject: Subject) => [subjectPrompt(subject)]);
    setValues((current) => ({ ...current, 'validation.prompts': prompts(next).join('\n') }));
  };

  const chooseLength = (next: RunLength) => {
    setLength(next);
    if (next !== 'steps') setPresetId('custom'); // no preset is in epochs
    markEdited(`params.${LENGTH_PARAMS[next]}`);
  };

  const setParam = (key: string, value: FieldValue) => {
    setValues((current) => ({ ...current, [key]: value }));
    setPresetId('custom'); // the form is no longer the preset
    if (key === 'validation.prompts') setPromptsFrom(null);
    markEdited(key);
  };

  // After a refusal: the first field it names gets the keyboard (inside Advanced settings too),
  // else the notice is brought into view.
  useEffect(() => {
    if (error === undefined) return;
    const invalid = form.current?.querySelector<HTMLElement>('[aria-invalid="true"]');
    if (invalid) {
      const details = invalid.closest('details');
      if (details) details.open = true;
      invalid.focus();
    } else {
      notice.current?.scrollIntoView({ block: 'nearest' });
    }
  }, [error]);

  const submit = async (event: Event) => {
    event.preventDefault();
    if (sending.current) return; // a second click while the first is on its way
    sending.current = true;
    setBusy(true);
    setError(undefined);
    setEdited(new Set());
    const body = {
      dataset_id: datasetId,
      model: modelId,
      ...(name.trim() === '' ? {} : { name: name.trim() }),
      params: paramsOf(fieldsFor(model.family, method), values, presetKeys, method, length, (field) => fieldDefault(field, method)) as TrainingParamsInput,
    };
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          const run = await unwrap(api.POST('/v1/training-runs', { body, params: { header: { 'idempotency-key': idempotencyKey } } }));
          navigate(`/runs/${run.id}`);
          return;
        } catch (caught) {
          // The same key still in flight (a submit from another tab of this form): its answer comes on retry.
          const inFlight = caught instanceof ApiError && caught.status === 409 && (caught.problem?.type ?? '').endsWith('idempotency-key-in-flight');
          if (!inFlight || attempt >= 10) throw caught;
          await sleep(1000);
        }
      }
    } catch (caught) {
      setError(caught);
      sending.current = false;
      setBusy(false);
    }
  };

  // The browser's own checks (min, max, step) cannot show on a control inside a closed <details>.
  const openInvalid = (event: Event) => {
    const details = (event.target as Element | null)?.closest('details');
    if (details && !details.open) details.open = true;
  };

  const shownFields = fieldsForLength(fieldsFor(model.family, method), length);
  const paramField = (
    key: string,
    extra: { hint?: string; placeholder?: string; emptyLabel?: string; rows?: number; maximum?: number; required?: boolean } = {},
  ) => {
    const field = FIELD_BY_KEY.get(key);
    if (field === undefined) return null; // a param the API no longer has
    if (!shownFields.includes(field)) return null; // a param of another family or method
    const { maximum, ...shown } = extra;
    return (
      <ParamField
        key={key}
        id={idOf(key)}
        label={field.toggle ? toggleLabelOf(key) : labelOf(key)}
        schema={maximum === undefined ? field.schema : { ...field.schema, maximum }}
        value={values[key] ?? ''}
        onChange={(value) => setParam(key, value)}
        error={paramError(key)}
        disabled={field.under !== undefined && values[field.under] !== true}
        {...shown}
      />
    );
  };

  const resolution = model.default_resolution;
  const advancedFields = shownFields.filter((field) => !MAIN_KEYS.has(field.key));
  /** What a param's control says about its default and limits on this model, where the model decides them. */
  const modelExtras = (key: string) => {
    switch (key) {
      case 'mixed_precision':
        return { emptyLabel: 'Server default' };
      case 'clip_skip':
        return model.clip_skip_max === null ? {} : { placeholder: '1', maximum: model.clip_skip_max };
      case 'text_encoder_2_lr':
        return { placeholder: String(values.text_encoder_lr || defaultFor(FIELD_BY_KEY.get('text_encoder_lr')?.schema, method) || '') };
      default:
        return {};
    }
  };
  const loose = advancedFields.filter((field) => field.group === undefined);
  const groups = [...new Set(advancedFields.flatMap((field) => (field.group === undefined ? [] : [field.group])))];
  const preset = presetById(presetId);

  return (
    <form ref={form} class="card" onSubmit={submit} onInvalidCapture={openInvalid} aria-describedby="new-run-help">
      <p id="new-run-help" class="hint">
        The run trains on the dataset's photos and captions as they are now. Settings left at their defaults are not sent:
        the API fills them in.
      </p>
      <div ref={notice}>
        <ErrorNotice error={error} prefix="The run was not started" />
      </div>

      <div class="form-grid">
        <div class="field">
          <label for="run-dataset">Dataset</label>
          <select
            id="run-dataset"
            value={datasetId}
            onChange={(event) => chooseDataset(event.currentTarget.value)}
            aria-describedby="run-dataset-hint"
            aria-invalid={fieldError('dataset_id') === undefined ? undefined : 'true'}
          >
            {datasets.map((option) => (
              <option key={option.id} value={option.id}>
                {option.name} ({option.image_count} {option.image_count === 1 ? 'image' : 'images'})
              </option>
            ))}
          </select>
          <p id="run-dataset-hint" class="hint">
            Trigger token <code>{dataset.trigger_token}</code>, class <code>{dataset.class_word}</code>.{' '}
            <Link to={`/datasets/${dataset.id}`}>Open the dataset</Link>
          </p>
          {fieldError('dataset_id') === undefined ? null : <p class="field-error">{fieldError('dataset_id')}</p>}
        </div>
        <div class="field">
          <label for="run-model">Base model</label>
          <select
            id="run-model"
            value={modelId}
            onChange={(event) => {
              setModelId(event.currentTarget.value);
              markEdited('model');
            }}
            aria-describedby="run-model-hint"
            aria-invalid={fieldError('model') === undefined ? undefined : 'true'}
          >
            {models.map((option) => (
              <option key={option.id} value={option.id}>{modelLabel(option)}</option>
            ))}
          </select>
          <p id="run-model-hint" class="hint">{model.description} Made for {resolution} px images.</p>
          {fieldError('model') === undefined ? null : <p class="field-error">{fieldError('model')}</p>}
        </div>
        <div class="field">
          <label for="run-name">Name</label>
          <input
            id="run-name"
            type="text"
            maxLength={100}
            value={name}
            onInput={(event) => {
              setName(event.currentTarget.value);
              markEdited('name');
            }}
            aria-describedby="run-name-hint"
            aria-invalid={fieldError('name') === undefined ? undefined : 'true'}
          />
          <p id="run-name-hint" class="hint">Optional; the run's id stands in for it.</p>
          {fieldError('name') === undefined ? null : <p class="field-error">{fieldError('name')}</p>}
        </div>
      </div>

      <RadioChoices legend="What to train" name="run-method" options={METHODS} value={method} onChange={chooseMethod} error={fieldError('params.method')} />
      <RadioChoices legend="Preset" name="run-preset" options={presetsFor(method)} value={presetId} onChange={(id) => choosePreset(id)} />

      <fieldset>
        <legend>Training</legend>
        {FIELD_BY_KEY.has(LENGTH_PARAMS.epochs) ? (
          <RadioChoices legend="Train for" name="run-length" options={LENGTHS} value={length} onChange={chooseLength} />
        ) : null}
        <div class="form-grid">
          {paramField('max_steps')}
          {paramField('max_epochs', { required: true })}
          {paramField('rank')}
          {paramField('learning_rate')}
          {paramField('resolution', {
            placeholder: String(resolution),
            maximum: resolution,
            hint: `Side of the training images in pixels, a multiple of 64, at most ${resolution}. Blank: ${resolution}, the model's own.`,
          })}
          {paramField('min_resolution', {
            maximum: resolution,
            hint:
              'For photos of mixed sizes: each trains at the largest resolution from this one up to Resolution that it fills ' +
              "(never enlarged), and smaller photos are skipped (the run's log names them). Blank: every photo at Resolution.",
          })}
        </div>
      </fieldset>

      <fieldset>
        <legend>Validation</legend>
        {paramField('validation.prompts', {
          rows: 3,
          hint: `One prompt per line (at most ${FIELD_BY_KEY.get('validation.prompts')?.schema.maxItems ?? 8}); each makes an image at every validation. None: the validation loss only.`,
        })}
        <div class="form-grid">
          {paramField('validation.every')}
          {paramField('validation_split', {
            hint:
              'The share of the photos held out from training, 0 to 0.5 (the same photos on every run of this dataset): ' +
              'each validation then reports the loss on them, so overfitting shows. 0: none held out.',
          })}
          {metrics === null || metrics.length === 0
            ? null
            : paramField('validation.final_images', {
                hint:
                  'Images per validation prompt made with the final weights at the end and scored with every metric chosen (0: none). ' +
                  'FID, KID and IS need at least 10 in all (this times the prompts), LPIPS at least 2.',
              })}
        </div>
        {metrics === null || metrics.length === 0 || !shownFields.some((field) => field.key === 'validation.metrics') ? null : (
          <MetricChoices
            id={idOf('validation.metrics')}
            legend={labelOf('validation.metrics')}
            metrics={metrics}
            chosen={String(values['validation.metrics'] ?? '').split('\n').filter((line) => line !== '')}
            onChange={(chosen) => setParam('validation.metrics', chosen.join('\n'))}
            error={paramError('validation.metrics')}
          />
        )}
      </fieldset>

      <details class="advanced">
        <summary>Advanced settings</summary>
        <div class="form-grid">{loose.map((field) => paramField(field.key, modelExtras(field.key)))}</div>
        {groups.map((group) => {
          const members = advancedFields.filter((field) => field.group === group);
          return (
            <fieldset key={group}>
              <legend>{labelOf(group)}</legend>
              {members.filter((field) => field.toggle).map((field) => paramField(field.key))}
              <div class="form-grid">{members.filter((field) => !field.toggle).map((field) => paramField(field.key))}</div>
            </fieldset>
          );
        })}
      </details>

      <div class="toolbar">
        <button type="submit" disabled={busy}>{busy ? 'Starting…' : 'Start training'}</button>
        <span class="muted">{preset.id === 'custom' ? 'Custom settings' : `Preset: ${preset.label}`}</span>
      </div>
    </form>
  );
}
