// One form control drawn from a JSON Schema: a number input with the schema's limits, a
// checkbox, a select of an enum, a text input, or a textarea of strings (one per line),
// with the schema's description as its hint and a server's message about it next to it.
import type { ParamSchema } from 'openapi:training-params';
import { paramKind, type FieldValue } from '../param-values.js';

export interface ParamFieldProps {
  /** Unique in the page: the control's id; its hint and error take it as a prefix. */
  id: string;
  label: string;
  schema: ParamSchema;
  value: FieldValue;
  onChange: (value: FieldValue) => void;
  /** Hint text; the schema's description when not given. */
  hint?: string;
  /** A server's message about this field. */
  error?: string | undefined;
  placeholder?: string;
  /** The empty choice of an enum without a default (e.g. "Server default"). */
  emptyLabel?: string;
  disabled?: boolean;
  /** The browser refuses a blank value (a param the form's other choices make necessary). */
  required?: boolean;
  rows?: number;
}

export function ParamField(props: ParamFieldProps) {
  const { id, label, schema, value, onChange, error, placeholder, emptyLabel, disabled, required, rows } = props;
  const hint = props.hint ?? schema.description;
  const hintId = `${id}-hint`;
  const errorId = `${id}-error`;
  const describedBy = [hint === undefined ? undefined : hintId, error === undefined ? undefined : errorId].filter(Boolean).join(' ') || undefined;
  const common = {
    id,
    name: id,
    disabled,
    required,
    'aria-describedby': describedBy,
    'aria-invalid': error === undefined ? undefined : ('true' as const),
  };
  const kind = paramKind(schema);
  const notes = (
    <>
      {hint === undefined ? null : <p id={hintId} class="hint">{hint}</p>}
      {error === undefined ? null : <p id={errorId} class="field-error">{error}</p>}
    </>
  );

  if (kind === 'boolean') {
    return (
      <div class="field">
        <div class="check">
          <input {...common} type="checkbox" checked={value === true} onChange={(event) => onChange(event.currentTarget.checked)} />
          <label for={id}>{label}</label>
        </div>
        {notes}
      </div>
    );
  }

  let control;
  if (kind === 'enum') {
    control = (
      <select {...common} value={String(value)} onChange={(event) => onChange(event.currentTarget.value)}>
        {schema.default === undefined ? <option value="">{emptyLabel ?? 'Default'}</option> : null}
        {schema.enum!.map((option) => (
          <option key={String(option)} value={String(option)}>{String(option)}</option>
        ))}
      </select>
    );
  } else if (kind === 'number') {
    // min/max/step from the schema let the browser refuse what the API would; an exclusive
    // minimum (a learning rate above 0) is left to the API, which names the field.
    control = (
      <input
        {...common}
        type="number"
        inputMode={schema.type === 'integer' ? 'numeric' : 'decimal'}
        min={schema.minimum}
        max={schema.maximum}
        step={schema.multipleOf ?? (schema.type === 'integer' ? 1 : 'any')}
        placeholder={placeholder}
        value={String(value)}
        onInput={(event) => onChange(event.currentTarget.value)}
      />
    );
  } else if (kind === 'lines') {
    control = (
      <textarea
        {...common}
        rows={rows ?? 3}
        placeholder={placeholder}
        value={String(value)}
        onInput={(event) => onChange(event.currentTarget.value)}
      />
    );
  } else {
    control = (
      <input
        {...common}
        type="text"
        maxLength={schema.maxLength}
        placeholder={placeholder}
        value={String(value)}
        onInput={(event) => onChange(event.currentTarget.value)}
      />
    );
  }
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {control}
      {notes}
    </div>
  );
}
