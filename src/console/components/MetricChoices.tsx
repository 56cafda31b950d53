// The quality metrics a run may ask for, as checkboxes: those GET /v1/quality-metrics
// lists, in the console's order; one whose network's weights the service lacks is disabled,
// with the reason as its hint.
import { metricLabel, type QualityMetricInfo } from '../quality-metrics.js';

export interface MetricChoicesProps {
  /** Unique in the page: the checkboxes' ids take it as a prefix. */
  id: string;
  legend: string;
  metrics: readonly QualityMetricInfo[];
  chosen: readonly string[];
  onChange: (chosen: string[]) => void;
  /** A server's message about the choice. */
  error?: string | undefined;
}

export function MetricChoices({ id, legend, metrics, chosen, onChange, error }: MetricChoicesProps) {
  const errorId = `${id}-error`;
  const toggle = (metric: string, on: boolean) =>
    onChange(metrics.map((info) => info.metric).filter((name) => (name === metric ? on : chosen.includes(name))));
  return (
    <fieldset aria-describedby={`${id}-hint${error === undefined ? '' : ` ${errorId}`}`}>
      <legend>{legend}</legend>
      <p id={`${id}-hint`} class="hint">
        Scored on the validation images at each validation (CLIP-T, CLIP-I, HPS) and on the final set (all of them). Higher is better except for FID and KID.
      </p>
      <div class="form-grid">
        {metrics.map((info) => {
          const checkId = `${id}-${info.metric}`;
          const hint = info.available ? info.description : `Unavailable: ${info.reason ?? 'the service has no weights for it'}`;
          return (
            <div class="field" key={info.metric}>
              <div class="check">
                <input
                  id={checkId}
                  name={checkId}
                  type="checkbox"
                  checked={info.available && chosen.includes(info.metric)}
                  disabled={!info.available}
                  aria-describedby={hint === '' ? undefined : `${checkId}-hint`}
                  aria-invalid={error === undefined ? undefined : 'true'}
                  onChange={(event) => toggle(info.metric, event.currentTarget.checked)}
                />
                <label for={checkId}>{metricLabel(info.metric)}</label>
              </div>
              {hint === '' ? null : <p id={`${checkId}-hint`} class="hint">{hint}</p>}
            </div>
          );
        })}
      </div>
      {error === undefined ? null : <p id={errorId} class="field-error">{error}</p>}
    </fieldset>
  );
}
