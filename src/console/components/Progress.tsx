// A labelled progress bar: <progress> with its text next to it, for screen readers and eyes.
export function Progress({ label, value, max, text }: { label: string; value: number | undefined; max: number; text?: string }) {
  return (
    <div class="progress">
      <progress aria-label={label} value={value} max={max} />
      {text === undefined ? null : <span class="progress-text">{text}</span>}
    </div>
  );
}
