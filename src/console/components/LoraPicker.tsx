// The LoRAs of a generation: each chosen one with its scale (a slider) and a remove button,
// and a select to add another: the tenant's succeeded LoRA training runs (by run id) and its
// uploaded LoRAs (by LoRA id), those of the chosen base model only. (A full fine-tuning run
// trains a model, chosen as the base model instead.)
import { useState } from 'preact/hooks';
import { ApiError, unwrap, type Lora, type TrainingRun } from '../api.js';
import { GENERATION_LIMITS } from '../generation-limits.js';
import { useLoad } from '../hooks.js';
import { Link } from '../router.js';
import { useSession } from '../session.js';
import { ErrorNotice } from './ErrorNotice.js';

const { maxLoras: MAX_LORAS, maxLoraScale: MAX_SCALE } = GENERATION_LIMITS;

export interface ChosenLora {
  /** "run:<training run id>" or "lora:<LoRA id>": how rows and options are matched. */
  key: string;
  use: { training_run_id: string } | { lora_id: string };
  name: string;
  scale: number;
  /** The base model it adapts, when known (a LoRA taken from an old generation may be gone). */
  model?: string;
  /** What to write in the prompt to call up its subject. */
  trigger?: string;
  source?: 'training run' | 'uploaded';
}

/** A succeeded run's LoRA, named by the run (the API resolves it to the LoRA it registered). */
export function runLora(run: TrainingRun, scale = 1): ChosenLora {
  return {
    key: `run:${run.id}`,
    use: { training_run_id: run.id },
    name: run.name ?? run.id,
    scale,
    model: run.model,
    trigger: `${run.trigger_token} ${run.class_word}`,
    source: 'training run',
  };
}

function uploadedLora(lora: Lora, scale = 1): ChosenLora {
  return {
    key: `lora:${lora.id}`,
    use: { lora_id: lora.id },
    name: lora.name,
    scale,
    model: lora.model,
    ...(lora.trigger_phrase === null ? {} : { trigger: lora.trigger_phrase }),
    source: lora.source === 'upload' ? 'uploaded' : 'training run',
  };
}

/** The `loras` entry of a generation request. */
export function loraUse(chosen: ChosenLora): { lora_id?: string; training_run_id?: string; scale: number } {
  return { ...chosen.use, scale: chosen.scale };
}

/** Messages of the problem's field errors at `field` or under it ("loras.0" takes "loras.0.scale"). */
function messagesAt(error: unknown, field: string): string[] {
  if (!(error instanceof ApiError)) return [];
  return (error.problem?.errors ?? []).filter((e) => e.field === field || e.field.startsWith(`${field}.`)).map((e) => e.message);
}

export interface LoraPickerProps {
  /** The chosen base model: only its LoRAs are offered. */
  model: string;
  chosen: ChosenLora[];
  onChange: (chosen: ChosenLora[]) => void;
  /** The refusal of the last submission: its loras.N errors show on the row that was N-th in it. */
  error: unknown;
  /** The rows' keys in the order the refused request listed them (rows removed or added since keep their messages straight). */
  errorKeys: string[];
}

export function LoraPicker({ model, chosen, onChange, error, errorKeys }: LoraPickerProps) {
  const { api } = useSession();
  const runs = useLoad(() => unwrap(api.GET('/v1/training-runs', { params: { query: { status: 'succeeded', limit: 100 } } })), [api]);
  // Every LoRA, not only uploads: a run's LoRA (as an old generation names it) is matched to its run.
  const loras = useLoad(() => unwrap(api.GET('/v1/loras', { params: { query: { limit: 100 } } })), [api]);
  const [adding, setAdding] = useState('');

  const runOptions = (runs.data?.data ?? []).filter((run) => run.params.method !== 'full').map((run) => runLora(run));
  const listedRuns = new Set(runOptions.map((option) => option.key));
  // A run's LoRA is offered as its run; one whose run is past the first page, as itself.
  const loraOptions = (loras.data?.data ?? [])
    .filter((lora) => lora.training_run_id === null || !listedRuns.has(`run:${lora.training_run_id}`))
    .map((lora) => uploadedLora(lora));
  /** "lora:<id>" of a run's LoRA, as "run:<id>": the same adapter either way. */
  const alias = new Map((loras.data?.data ?? []).filter((lora) => lora.training_run_id !== null).map((lora) => [`lora:${lora.id}`, `run:${lora.training_run_id}`]));
  const canonical = (key: string) => (alias.has(key) && listedRuns.has(alias.get(key)!) ? alias.get(key)! : key);
  const known = new Map([...runOptions, ...loraOptions].map((option) => [option.key, option]));
  for (const lora of loras.data?.data ?? []) if (!known.has(`lora:${lora.id}`)) known.set(`lora:${lora.id}`, uploadedLora(lora));

  const taken = new Set(chosen.map((row) => canonical(row.key)));
  const offer = (options: ChosenLora[]) => options.filter((option) => option.model === model && !taken.has(option.key));
  const offeredRuns = offer(runOptions);
  const offeredLoras = offer(loraOptions);
  const full = chosen.length >= MAX_LORAS;
  const nothing = offeredRuns.length + offeredLoras.length === 0;
  const listMessages = error instanceof ApiError ? [error.fieldMessage('loras')].filter((m): m is string => m !== undefined) : [];

  // Only what is offered now: the base model may have changed since it was picked.
  const picked = [...offeredRuns, ...offeredLoras].find((offered) => offered.key === adding);
  const add = () => {
    if (picked === undefined || full) return;
    onChange([...chosen, { ...picked, scale: 1 }]);
    setAdding('');
  };

  return (
    <fieldset>
      <legend>LoRAs</legend>
      <ErrorNotice error={runs.error} prefix="Could not list training runs" />
      <ErrorNotice error={loras.error} prefix="Could not list LoRAs" />
      {chosen.length === 0 ? <p class="hint">None: the base model alone.</p> : null}
      {chosen.map((row, index) => (
        <LoraRow
          key={row.key}
          row={described(row, known.get(canonical(row.key)))}
          model={model}
          messages={errorKeys.includes(row.key) ? messagesAt(error, `loras.${errorKeys.indexOf(row.key)}`) : []}
          onScale={(scale) => onChange(chosen.map((other, i) => (i === index ? { ...other, scale } : other)))}
          onRemove={() => onChange(chosen.filter((_, i) => i !== index))}
        />
      ))}
      <div class="field">
        <label for="lora-add">Add a LoRA</label>
        <select
          id="lora-add"
          value={adding}
          disabled={full || nothing}
          aria-describedby="lora-add-hint"
          aria-invalid={listMessages.length === 0 ? undefined : 'true'}
          onChange={(event) => setAdding(event.currentTarget.value)}
        >
          <option value="">{runs.loading || loras.loading ? 'Loading…' : nothing ? 'None left for this base model' : 'Choose a LoRA…'}</option>
          {offeredRuns.length === 0 ? null : (
            <optgroup label="Trained here">
              {offeredRuns.map((option) => <option key={option.key} value={option.key}>{option.name}</option>)}
            </optgroup>
          )}
          {offeredLoras.length === 0 ? null : (
            <optgroup label="Uploaded">
              {offeredLoras.map((option) => <option key={option.key} value={option.key}>{option.name}</option>)}
            </optgroup>
          )}
        </select>
        <p class="hint" id="lora-add-hint">
          {full ? (
            `At most ${MAX_LORAS} LoRAs in one generation.`
          ) : (
            <>
              Succeeded training runs and uploaded LoRAs of {model || 'the base model'}. No LoRA yet? <Link to="/runs/new">Train one</Link>.
            </>
          )}
        </p>
        {listMessages.map((message) => <p class="field-error" key={message}>{message}</p>)}
      </div>
      {/* A button, not "add on change": arrow keys on a closed select fire change events. */}
      <button type="button" class="small secondary" onClick={add} disabled={picked === undefined || full}>Add LoRA</button>
    </fieldset>
  );
}

/** A chosen row with what the listings know of it (a row filled from a generation has only its id, name and scale). */
function described(row: ChosenLora, listed: ChosenLora | undefined): ChosenLora {
  const model = row.model ?? listed?.model;
  const trigger = row.trigger ?? listed?.trigger;
  const source = row.source ?? listed?.source;
  return { ...row, ...(model === undefined ? {} : { model }), ...(trigger === undefined ? {} : { trigger }), ...(source === undefined ? {} : { source }) };
}

interface LoraRowProps {
  row: ChosenLora;
  model: string;
  messages: string[];
  onScale: (scale: number) => void;
  onRemove: () => void;
}

function LoraRow({ row, model, messages, onScale, onRemove }: LoraRowProps) {
  const id = `lora-scale-${row.key.replace(/[^\w-]/g, '-')}`;
  const otherModel = row.model !== undefined && model !== '' && row.model !== model;
  const notes = [
    row.source,
    row.trigger === undefined ? undefined : `prompt with “${row.trigger}”`,
    otherModel ? `adapts ${row.model}, not ${model}` : undefined,
  ].filter((note): note is string => note !== undefined);
  return (
    <div class="field">
      <div class="lora-row">
        <div>
          <label for={id}>
            <span class="visually-hidden">Scale of </span>
            {row.name}
          </label>
          {notes.length === 0 ? null : <p class="hint" id={`${id}-hint`}>{notes.join(' · ')}</p>}
        </div>
        <div>
          <input
            id={id}
            type="range"
            min={-MAX_SCALE}
            max={MAX_SCALE}
            step={0.05}
            value={row.scale}
            aria-describedby={[notes.length === 0 ? '' : `${id}-hint`, messages.length === 0 ? '' : `${id}-error`].join(' ').trim() || undefined}
            aria-invalid={messages.length === 0 && !otherModel ? undefined : 'true'}
            onInput={(event) => onScale(Number(event.currentTarget.value))}
          />{' '}
          {/* not live: the slider itself says its value, twice would be noise */}
          <output for={id} aria-live="off">{row.scale.toFixed(2)}</output>
        </div>
        <button type="button" class="small danger" aria-label={`Remove ${row.name}`} onClick={onRemove}>Remove</button>
      </div>
      {messages.length === 0 ? null : <p class="field-error" id={`${id}-error`}>{messages.join('; ')}</p>}
    </div>
  );
}
