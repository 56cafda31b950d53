// Generate: a form for one generation request (base model, prompts, size, sampling, LoRAs),
// its progress while it runs, and the gallery of the tenant's recent generations. A field
// of some model families only (clip skip: SD 1.x/2.x) is shown for those models alone.
import { useEffect, useRef, useState } from 'preact/hooks';
import type { operations } from '../../../openapi/client/index.js';
import { ApiError, newIdempotencyKey, unwrap, type BaseModel, type Generation } from '../api.js';
import { ErrorNotice } from '../components/ErrorNotice.js';
import { GenerationCard, isActive, progressText, SAMPLER_NAMES, type Sampler } from '../components/GenerationCard.js';
import { loraUse, LoraPicker, runLora, type ChosenLora } from '../components/LoraPicker.js';
import { Progress } from '../components/Progress.js';
import { GENERATION_LIMITS as LIMITS, generationField } from '../generation-limits.js';
import { useInterval, useLoad } from '../hooks.js';
import { appliesTo, modelLabel } from '../model-family.js';
import { useSession } from '../session.js';

type CreateBody = operations['createGeneration']['requestBody']['content']['application/json'];

const POLL_MS = 500;
const CLIP_SKIP = generationField('clip_skip');
/** How often the gallery refreshes while a generation other than this page's own is unfinished. */
const GALLERY_POLL_MS = 3000;

/** The form as typed: numbers stay text, so a blank one can mean "the API's default". */
interface FormValues {
  model: string;
  prompt: string;
  negative_prompt: string;
  width: string;
  height: string;
  steps: string;
  guidance_scale: string;
  sampler: Sampler;
  seed: string;
  num_images: string;
  /** Blank: the model's default (the last layer). Sent only to a model whose family has it. */
  clip_skip: string;
}

const EMPTY: FormValues = {
  model: '',
  prompt: '',
  negative_prompt: '',
  width: '',
  height: '',
  steps: '30',
  guidance_scale: '5',
  sampler: 'euler',
  seed: '',
  num_images: '1',
  clip_skip: '',
};

/** The request: only the fields that are set and that the model has (a blank seed is random, a blank size the model's own). */
function requestBody(values: FormValues, loras: ChosenLora[], model: BaseModel | undefined): CreateBody {
  const numbers = (['width', 'height', 'steps', 'guidance_scale', 'seed', 'num_images', 'clip_skip'] as const)
    .filter((name) => name !== 'clip_skip' || (model !== undefined && appliesTo(CLIP_SKIP, model.family)))
    .flatMap((name) => (values[name].trim() === '' ? [] : [[name, Number(values[name])] as const]));
  return {
    model: values.model,
    prompt: values.prompt,
    ...(values.negative_prompt.trim() === '' ? {} : { negative_prompt: values.negative_prompt }),
    ...Object.fromEntries(numbers),
    sampler: values.sampler,
    ...(loras.length === 0 ? {} : { loras: loras.map(loraUse) }),
  };
}

/** A generation's settings back in the form (its seed too: the same settings make the same images). */
function valuesOf(generation: Generation): FormValues {
  const { params } = generation;
  return {
    model: generation.model,
    prompt: params.prompt,
    negative_prompt: params.negative_prompt,
    width: String(params.width),
    height: String(params.height),
    steps: String(params.steps),
    guidance_scale: String(params.guidance_scale),
    sampler: params.sampler,
    seed: String(params.seed),
    num_images: String(params.num_images),
    clip_skip: params.clip_skip === undefined ? '' : String(params.clip_skip),
  };
}

function isProblemType(error: unknown, type: string): boolean {
  return error instanceof ApiError && (error.problem?.type ?? '').endsWith(type);
}

export function GeneratePage({ runId }: { runId: string | undefined }) {
  const { api } = useSession();
  const models = useLoad(() => unwrap(api.GET('/v1/models')), [api]);
  const run = useLoad(
    () => (runId === undefined ? Promise.resolve(undefined) : unwrap(api.GET('/v1/training-runs/{id}', { params: { path: { id: runId } } }))),
    [api, runId],
  );
  const gallery = useLoad(() => unwrap(api.GET('/v1/generations', { params: { query: { limit: 20 } } })), [api]);

  const [values, setValues] = useState<FormValues>(EMPTY);
  const [loras, setLoras] = useState<ChosenLora[]>([]);
  const [error, setError] = useState<unknown>(undefined);
  /** The LoRA rows as the last request sent them, so its loras.N errors find their rows. */
  const [sentLoras, setSentLoras] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);
  /** The generation this page submitted last, polled until it finishes. */
  const [current, setCurrent] = useState<Generation | undefined>(undefined);
  const [pollError, setPollError] = useState<unknown>(undefined);
  /** One key per attempt group: a retry after a lost answer replays instead of generating twice. */
  const idempotencyKey = useRef<string | null>(null);
  const form = useRef<HTMLFormElement>(null);
  const prompt = useRef<HTMLTextAreaElement>(null);
  const preselected = useRef<string | undefined>(undefined);
  const polling = useRef(false);

  const modelList = models.data?.data ?? [];
  const defaultSide = (id: string) => modelList.find((model) => model.id === id)?.default_resolution;
  const chosenModel = modelList.find((model) => model.id === values.model);

  // ?run=: that run's LoRA at scale 1, on its own base model; or a full run's model as the model (once per run id).
  useEffect(() => {
    const loaded = run.data;
    if (loaded === undefined || models.data === undefined || preselected.current === loaded.id || loaded.status !== 'succeeded') return;
    preselected.current = loaded.id;
    const trained = loaded.output?.model_id ?? null;
    if (loaded.params.method === 'full' && trained === null) return; // its model was deleted
    if (loaded.params.method !== 'full') {
      setLoras((chosen) => (chosen.some((row) => row.key === `run:${loaded.id}`) ? chosen : [...chosen, runLora(loaded)]));
    }
    const model = trained ?? loaded.model;
    const side = defaultSide(model);
    setValues((old) => ({ ...old, model, ...(side === undefined ? {} : { width: String(side), height: String(side) }) }));
  }, [run.data, models.data]);

  // The first model (the demo one) until one is chosen; waits for ?run= to name its own.
  useEffect(() => {
    const first = models.data?.data[0];
    if (first === undefined || run.loading) return;
    setValues((old) => (old.model !== '' ? old : { ...old, model: first.id, width: String(first.default_resolution), height: String(first.default_resolution) }));
  }, [models.data, run.loading]);

  // After a refusal, the keyboard goes to the first field it names.
  useEffect(() => {
    if (error instanceof ApiError && (error.problem?.errors?.length ?? 0) > 0) form.current?.querySelector<HTMLElement>('[aria-invalid="true"]')?.focus();
  }, [error]);

  const set = (name: keyof FormValues) => (event: Event) => {
    const value = (event.currentTarget as HTMLInputElement).value;
    setValues((old) => ({ ...old, [name]: value }));
  };

  const chooseModel = (event: Event) => {
    const id = (event.currentTarget as HTMLSelectElement).value;
    const side = defaultSide(id);
    setValues((old) => ({ ...old, model: id, ...(side === undefined ? {} : { width: String(side), height: String(side) }) }));
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    idempotencyKey.current ??= newIdempotencyKey();
    setSentLoras(loras.map((row) => row.key));
    try {
      const generation = await unwrap(
        api.POST('/v1/generations', { body: requestBody(values, loras, chosenModel), params: { header: { 'idempotency-key': idempotencyKey.current } } }),
      );
      idempotencyKey.current = null; // the next click is a new generation
      setCurrent(generation);
      setPollError(undefined);
      void gallery.reload();
    } catch (caught) {
      if (isProblemType(caught, 'idempotency-key-reused')) {
        // An earlier try with this key (its answer lost) was queued with other settings.
        idempotencyKey.current = null;
        void gallery.reload();
        setError(new Error('An earlier try was queued already, with the settings it had then: see the gallery. Press Generate again to queue these settings too.'));
      } else {
        setError(caught);
      }
    } finally {
      setBusy(false);
    }
  };

  const poll = async () => {
    if (current === undefined || polling.current) return; // one request at a time, however slow
    polling.current = true;
    try {
      const next = await unwrap(api.GET('/v1/generations/{id}', { params: { path: { id: current.id } } }));
      setCurrent(next);
      setPollError(undefined);
      if (!isActive(next.status)) void gallery.reload();
    } catch (caught) {
      setPollError(caught); // shown; the next tick tries again
    } finally {
      polling.current = false;
    }
  };
  useInterval(() => void poll(), POLL_MS, current !== undefined && isActive(current.status));

  // The gallery: this page's generation (as last polled) on top while it runs, then the rest, newest first.
  const listed = (gallery.data?.data ?? []).map((generation) => (generation.id === current?.id ? current : generation));
  const shown = current !== undefined && !listed.some((generation) => generation.id === current.id) ? [current, ...listed] : listed;
  const othersActive = listed.some((generation) => generation.id !== current?.id && isActive(generation.status));
  useInterval(() => void gallery.reload(), GALLERY_POLL_MS, othersActive);

  const fillFrom = (generation: Generation) => {
    setValues(valuesOf(generation));
    setLoras(generation.loras.map((lora) => ({ key: `lora:${lora.lora_id}`, use: { lora_id: lora.lora_id }, name: lora.name, scale: lora.scale })));
    setError(undefined);
    idempotencyKey.current = null; // other settings: another request
    prompt.current?.focus();
    prompt.current?.scrollIntoView({ block: 'center' });
  };

  const changed = (generation: Generation) => {
    if (generation.id === current?.id) setCurrent(generation);
    void gallery.reload();
  };

  const fieldMessage = (name: string) => (error instanceof ApiError ? error.fieldMessage(name) : undefined);

  return (
    <>
      <h1>Generate</h1>
      <form class="card" ref={form} onSubmit={submit} aria-labelledby="generate-heading">
        <h2 id="generate-heading" class="visually-hidden">New generation</h2>
        <ErrorNotice error={error} />
        <ErrorNotice error={models.error} prefix="Could not list base models" />
        <RunNotice runId={runId} run={run.data} error={run.error} />

        <Field id="gen-model" label="Base model" message={fieldMessage('model')} hint={chosenModel?.description}>
          {(described) => (
            <select id="gen-model" value={values.model} onChange={chooseModel} disabled={models.data === undefined} required {...described}>
              {models.data === undefined ? <option value="">Loading…</option> : null}
              {modelOptions(modelList, values.model)}
            </select>
          )}
        </Field>
        <Field id="gen-prompt" label="Prompt" message={fieldMessage('prompt')}>
          {(described) => (
            <textarea id="gen-prompt" ref={prompt} value={values.prompt} onInput={set('prompt')} rows={3} maxLength={4000} required {...described} />
          )}
        </Field>
        <Field id="gen-negative" label="Negative prompt" message={fieldMessage('negative_prompt')} hint="What the images should not show; optional.">
          {(described) => <textarea id="gen-negative" value={values.negative_prompt} onInput={set('negative_prompt')} rows={2} maxLength={4000} {...described} />}
        </Field>

        <div class="form-grid">
          <NumberField id="gen-width" name="width" label="Width" values={values} set={set} message={fieldMessage('width')} min={LIMITS.minSide} max={LIMITS.maxSide} step={LIMITS.sideMultiple} hint="Pixels, a multiple of 8." />
          <NumberField id="gen-height" name="height" label="Height" values={values} set={set} message={fieldMessage('height')} min={LIMITS.minSide} max={LIMITS.maxSide} step={LIMITS.sideMultiple} hint="Pixels, a multiple of 8." />
          <NumberField id="gen-steps" name="steps" label="Steps" values={values} set={set} message={fieldMessage('steps')} min={1} max={LIMITS.maxSteps} step={1} />
          <NumberField id="gen-guidance" name="guidance_scale" label="Guidance scale" values={values} set={set} message={fieldMessage('guidance_scale')} min={0} max={LIMITS.maxGuidance} step={0.5} hint="1 or less turns guidance off." />
          <Field id="gen-sampler" label="Sampler" message={fieldMessage('sampler')}>
            {(described) => (
              <select id="gen-sampler" value={values.sampler} onChange={set('sampler')} {...described}>
                {(Object.keys(SAMPLER_NAMES) as Sampler[]).map((sampler) => <option key={sampler} value={sampler}>{SAMPLER_NAMES[sampler]}</option>)}
              </select>
            )}
          </Field>
          <NumberField id="gen-seed" name="seed" label="Seed" values={values} set={set} message={fieldMessage('seed')} min={0} max={LIMITS.maxSeed} step={1} hint="Blank: random. Image i uses seed + i." />
          <NumberField id="gen-images" name="num_images" label="Number of images" values={values} set={set} message={fieldMessage('num_images')} min={1} max={LIMITS.maxImages} step={1} />
          {chosenModel === undefined || chosenModel.clip_skip_max === null || !appliesTo(CLIP_SKIP, chosenModel.family) ? null : (
            <NumberField
              id="gen-clip-skip" name="clip_skip" label="Clip skip" values={values} set={set} message={fieldMessage('clip_skip')}
              min={CLIP_SKIP.minimum ?? 1} max={chosenModel.clip_skip_max} step={1} placeholder="1"
              hint={`Condition on the text encoder's layer this many from the end: 1 (blank) the last, 2 the penultimate; at most ${chosenModel.clip_skip_max}.`}
            />
          )}
        </div>

        <LoraPicker model={values.model} chosen={loras} onChange={setLoras} error={error} errorKeys={sentLoras} />

        <div class="toolbar">
          <button type="submit" disabled={busy || values.model === ''}>{busy ? 'Submitting…' : 'Generate'}</button>
        </div>
        <CurrentStatus generation={current} pollError={pollError} />
      </form>

      <section aria-labelledby="gallery-heading">
        <h2 id="gallery-heading">Gallery</h2>
        <ErrorNotice error={gallery.error} prefix="Could not list generations" />
        {gallery.data === undefined && current === undefined ? (
          gallery.loading ? <p aria-busy="true">Loading…</p> : null
        ) : shown.length === 0 ? (
          <p>No generations yet: the images you generate appear here.</p>
        ) : (
          <ul class="gallery">
            {shown.map((generation) => <GenerationCard key={generation.id} generation={generation} onUse={fillFrom} onChanged={changed} />)}
          </ul>
        )}
      </section>
    </>
  );
}

/** The models as options; a model a used generation names but this server no longer has stays selectable (the API will say so). */
function modelOptions(models: BaseModel[], selected: string) {
  const options = models.map((model) => <option key={model.id} value={model.id}>{modelLabel(model, 'demo: makes noise')}</option>);
  if (selected !== '' && models.length > 0 && !models.some((model) => model.id === selected)) {
    options.push(<option key={selected} value={selected}>{selected} (not on this server)</option>);
  }
  return options;
}

/** Where ?run= points at a run whose LoRA cannot be used (yet). */
function RunNotice({ runId, run, error }: { runId: string | undefined; run: { id: string; name: string | null; status: string } | undefined; error: unknown }) {
  if (runId === undefined) return null;
  if (error !== undefined) return <ErrorNotice error={error} prefix="Could not add the training run's LoRA" />;
  if (run === undefined || run.status === 'succeeded') return null;
  return <p class="hint">Training run {run.name ?? run.id} is {run.status}: its LoRA can be used once it has succeeded.</p>;
}

/** aria-describedby and aria-invalid of a control with an optional hint and error below it. */
interface Described {
  'aria-describedby'?: string;
  'aria-invalid'?: 'true';
}

function Field({ id, label, hint, message, children }: { id: string; label: string; hint?: string | undefined; message: string | undefined; children: (described: Described) => preact.JSX.Element }) {
  const ids = [hint === undefined ? '' : `${id}-hint`, message === undefined ? '' : `${id}-error`].join(' ').trim();
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {children({ ...(ids === '' ? {} : { 'aria-describedby': ids }), ...(message === undefined ? {} : { 'aria-invalid': 'true' }) })}
      {hint === undefined ? null : <p class="hint" id={`${id}-hint`}>{hint}</p>}
      {message === undefined ? null : <p class="field-error" id={`${id}-error`}>{message}</p>}
    </div>
  );
}

type NumberName = 'width' | 'height' | 'steps' | 'guidance_scale' | 'seed' | 'num_images' | 'clip_skip';

interface NumberFieldProps {
  id: string;
  name: NumberName;
  label: string;
  values: FormValues;
  set: (name: NumberName) => (event: Event) => void;
  message: string | undefined;
  min: number;
  max: number;
  step: number;
  hint?: string;
  placeholder?: string;
}

function NumberField({ id, name, label, values, set, message, min, max, step, hint, placeholder }: NumberFieldProps) {
  return (
    <Field id={id} label={label} message={message} hint={hint}>
      {(described) => (
        <input id={id} name={name} type="number" inputMode={step < 1 ? 'decimal' : 'numeric'} min={min} max={max} step={step} placeholder={placeholder} value={values[name]} onInput={set(name)} {...described} />
      )}
    </Field>
  );
}

/**
 * The submitted generation: its status (a live region, there from the start so that each
 * change is announced), progress while it runs, and why it failed.
 */
function CurrentStatus({ generation, pollError }: { generation: Generation | undefined; pollError: unknown }) {
  const images = generation?.output?.length ?? 0;
  const said =
    generation === undefined
      ? ''
      : generation.status === 'succeeded'
        ? `Generated ${images} image${images === 1 ? '' : 's'}: see the gallery below.`
        : generation.status === 'failed'
          ? `The generation failed: ${generation.error?.message ?? 'no reason given'}`
          : `Generation ${generation.status}${generation.cancel_requested && isActive(generation.status) ? ' (canceling)' : ''}.`;
  return (
    <div class="stack">
      <p role="status" id="generation-status" class={generation?.status === 'failed' ? 'error' : undefined}>{said}</p>
      {generation !== undefined && isActive(generation.status) ? (
        <Progress label="Generation progress" value={generation.progress?.percent} max={100} text={progressText(generation)} />
      ) : null}
      <ErrorNotice error={pollError} prefix="Could not refresh the generation" />
    </div>
  );
}
