// One choice among a few, as a fieldset of radios each with its description (the new-run
// form's "What to train" and "Preset"). A refusal naming the choice marks the chosen radio.
export interface RadioChoice<Id extends string> {
  id: Id;
  label: string;
  description: string;
}

interface RadioChoicesProps<Id extends string> {
  legend: string;
  /** The radios' name, and the start of each radio's id ("run-method" → run-method-lora). */
  name: string;
  options: ReadonlyArray<RadioChoice<Id>>;
  value: Id;
  onChange: (id: Id) => void;
  /** The API's message about this choice, shown under it. */
  error?: string | undefined;
}

export function RadioChoices<Id extends string>({ legend, name, options, value, onChange, error }: RadioChoicesProps<Id>) {
  return (
    <fieldset>
      <legend>{legend}</legend>
      {options.map((option) => (
        <div class="field" key={option.id}>
          <div class="check">
            <input
              type="radio"
              id={`${name}-${option.id}`}
              name={name}
              value={option.id}
              checked={value === option.id}
              onChange={() => onChange(option.id)}
              aria-describedby={`${name}-${option.id}-hint`}
              aria-invalid={option.id === value && error !== undefined ? 'true' : undefined}
            />
            <label for={`${name}-${option.id}`}>{option.label}</label>
          </div>
          <p id={`${name}-${option.id}-hint`} class="hint">{option.description}</p>
        </div>
      ))}
      {error === undefined ? null : <p class="field-error">{error}</p>}
    </fieldset>
  );
}
